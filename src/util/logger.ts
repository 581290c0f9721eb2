/**
 * pino, writing synchronously to fd 1 so that shard threads log without a hop through the
 * main thread and a line logged just before a crash is not lost.
 *
 * Under pm2's cluster mode fd 1 is the pm2 daemon's own output, not the app's log: pm2 catches
 * the app's output by replacing process.stdout.write in the main thread (and a worker thread's
 * stdout is piped to it). There, lines go through process.stdout, so that `pm2 logs` shows them.
 */
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { pid: process.pid, ...bindings } }, destination());
}

/** Whether this process runs as a pm2 cluster-mode instance (pm2 puts its settings in the environment). */
export function underPm2Cluster(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.pm_id !== undefined && env.exec_mode === 'cluster_mode';
}

function destination(): DestinationStream {
  return underPm2Cluster() ? process.stdout : pino.destination({ dest: 1, sync: true });
}

/**
 * pino, writing each line to fd 1 from the thread that logs it (src/util/log-sink.ts), so that
 * shard threads log without a hop through the main thread, a line logged just before a crash is
 * not lost, and a reader of stdout that stops reading does not stop the server.
 *
 * Under pm2's cluster mode fd 1 is the pm2 daemon's own output, not the app's log: pm2 catches
 * the app's output by replacing process.stdout.write in the main thread (and a worker thread's
 * stdout is piped to it). There, lines go through process.stdout, so that `pm2 logs` shows them.
 */
import { pino, type DestinationStream, type Logger } from 'pino';
import { LogSink, unblockStdout } from './log-sink.js';

export type { Logger };

/** This thread's sink (one per thread: each has its own module instance), made by the first logger. */
let sink: LogSink | null = null;

export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  if (underPm2Cluster()) return pino({ level, base: { pid: process.pid, ...bindings } }, process.stdout);
  const logger = pino({ level, base: { pid: process.pid, ...bindings } }, threadSink() as DestinationStream);
  sink!.onDropped ??= (lines) => logger.warn({ droppedLines: lines }, 'log lines dropped: the reader of stdout did not keep up');
  return logger;
}

/** Writes what this thread's log still holds, without waiting for a stalled reader. */
export function flushLogs(): void {
  sink?.flushSync();
}

/** Whether this process runs as a pm2 cluster-mode instance (pm2 puts its settings in the environment). */
export function underPm2Cluster(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.pm_id !== undefined && env.exec_mode === 'cluster_mode';
}

function threadSink(): LogSink {
  if (sink === null) {
    unblockStdout();
    sink = new LogSink();
  }
  return sink;
}

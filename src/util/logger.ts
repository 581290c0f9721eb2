/**
 * pino, writing synchronously to fd 1 so that shard threads log without a hop through the
 * main thread and a line logged just before a crash is not lost.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { pid: process.pid, ...bindings } }, pino.destination({ dest: 1, sync: true }));
}

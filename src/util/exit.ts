/**
 * The two ways the process ends once its log lines are out. Node's own exit stops every worker
 * thread, and a shard stopped with uWS sockets still open aborts the process (exit 134, a core
 * dump and a native stack on stderr). That is fine once the shards have closed their sockets,
 * and not when one is hung past the shutdown deadline: then the process kills itself, which
 * skips the threads' teardown.
 */

import { flushLogs } from './logger.js';

/** Exits with `code` after stdout is flushed (at most a second later). Every shard must have exited. */
export function exitAfterOutput(code: number): void {
  flushLogs();
  setTimeout(() => process.exit(code), 1000).unref();
  process.stdout.write('', () => process.exit(code));
}

/** Ends the process with SIGKILL after stdout is flushed: a shard is still running and cannot be stopped cleanly. */
export function killAfterOutput(): void {
  flushLogs();
  const kill = (): void => void process.kill(process.pid, 'SIGKILL');
  setTimeout(kill, 1000).unref();
  process.stdout.write('', kill);
}

/**
 * The primary thread's last line of defence. Every broker path handles its own failures, but a
 * rejection or throw that slips through one (a library's stray promise, a bug) must not end the
 * process: the shards' uWS sockets would be torn down with it (exit 134), cutting every client.
 * It is logged with E_INTERNAL, at most LOG_BURST times a minute, and counted.
 */
import type { Logger } from '../util/logger.js';

const LOG_BURST = 10;
const WINDOW_MS = 60_000;

export interface LastResort {
  /** Errors caught here since start. */
  readonly caught: number;
  uninstall(): void;
}

export function installLastResort(log: Logger): LastResort {
  let caught = 0;
  let windowStart = 0;
  let loggedInWindow = 0;
  let suppressed = 0;
  const record = (kind: string, err: unknown): void => {
    caught++;
    const now = Date.now();
    if (now - windowStart >= WINDOW_MS) {
      if (suppressed > 0) log.error({ code: 'E_INTERNAL', suppressed }, 'more unexpected errors were caught and not logged');
      windowStart = now;
      loggedInWindow = 0;
      suppressed = 0;
    }
    if (loggedInWindow++ < LOG_BURST) log.error({ code: 'E_INTERNAL', kind, err }, 'unexpected error caught in the primary thread; still serving');
    else suppressed++;
  };
  const onRejection = (reason: unknown): void => record('unhandledRejection', reason);
  const onException = (err: unknown): void => record('uncaughtException', err);
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  return {
    get caught() {
      return caught;
    },
    uninstall() {
      process.off('unhandledRejection', onRejection);
      process.off('uncaughtException', onException);
    },
  };
}

import type { Logger } from './logger.js';

/**
 * Counts events and reports them at most once per `everyMs`: the first at once, the ones after
 * it summed at the next event past the interval. For warnings that a flood would otherwise
 * repeat once per event (a log line per dropped letter).
 */
export class Tally {
  private unreported = 0;
  private reportedAt = -Infinity;

  constructor(
    private readonly everyMs: number,
    private readonly report: (count: number) => void,
  ) {}

  add(count: number): void {
    this.unreported += count;
    const now = Date.now();
    if (this.unreported === 0 || now - this.reportedAt < this.everyMs) return;
    this.reportedAt = now;
    const total = this.unreported;
    this.unreported = 0;
    this.report(total);
  }
}

/** How often a warning that a client can cause with each frame is logged at most. */
export const WARN_EVERY_MS = 10_000;

/**
 * A warning that a client can cause once per frame, logged at most once per `everyMs`: with the
 * fields of the latest occurrence and `count`, how many there were since the last line.
 */
export function warnEvery(log: Logger, everyMs: number, message: string): (fields: Record<string, unknown>) => void {
  let latest: Record<string, unknown> = {};
  const tally = new Tally(everyMs, (count) => log.warn({ ...latest, count }, message));
  return (fields) => {
    latest = fields;
    tally.add(1);
  };
}

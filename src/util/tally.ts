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

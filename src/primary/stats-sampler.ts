/**
 * Samples the shards' counters every metrics_collection_interval: per-second rates go into the
 * shared table (served by /stats from any shard), with a copy of the broker's counters, and a
 * `stats` line goes to the log every log_interval.
 */
import type { Config } from '../config/schema.js';
import { byName, Counter, COUNTER_COUNT, MESSAGING_COUNTERS, type MessagingCounterName, type ShardTable } from '../shared/shard-table.js';
import type { Logger } from '../util/logger.js';

export class StatsSampler {
  private timer: NodeJS.Timeout | null = null;
  private previous: Float64Array | null = null;
  private previousAt = 0;
  private lastLogAt = Date.now();

  constructor(
    private readonly table: ShardTable,
    private readonly monitoring: Config['websocket']['monitoring'],
    private readonly log: Logger,
    /** The broker's and its shard link's live counters (same thread), copied into the table for /stats. */
    private readonly messaging: () => Readonly<Record<MessagingCounterName, number>>,
  ) {}

  start(): void {
    if (!this.monitoring.enable_metrics_collection) return;
    this.timer = setInterval(() => this.sample(), this.monitoring.metrics_collection_interval * 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  sample(now = Date.now()): void {
    const broker = this.messaging();
    MESSAGING_COUNTERS.forEach((name, i) => (this.table.messaging[i] = broker[name]));
    const totals = this.table.totals();
    if (this.previous) {
      const seconds = (now - this.previousAt) / 1000;
      for (let i = 0; i < COUNTER_COUNT; i++) this.table.rates[i] = (totals[i]! - this.previous[i]!) / seconds;
    }
    this.previous = totals;
    this.previousAt = now;
    const logEvery = this.monitoring.log_interval * 1000;
    if (logEvery > 0 && now - this.lastLogAt >= logEvery) {
      this.lastLogAt = now;
      const rates = this.table.rates;
      this.log.info(
        {
          connections: this.table.totalConnections(),
          frames_in_per_s: Math.round(rates[Counter.frames_in]!),
          deliveries_per_s: Math.round(rates[Counter.deliveries]!),
          totals: byName(totals),
        },
        'stats',
      );
    }
  }
}

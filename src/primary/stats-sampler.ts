/**
 * Samples the shards' counters every metrics_collection_interval: per-second rates go into the
 * shared table (served by /stats from any shard), with a copy of the broker's counters; the
 * metrics hub (when metrics are on) merges the threads' histograms and renders /metrics, /stats
 * and /alerts; and a `stats` line goes to the log every log_interval, with the merged latency
 * percentiles and the throughput since the previous line.
 */
import type { Config } from '../config/schema.js';
import type { MetricsHub } from '../metrics/hub.js';
import { type ShardTable } from '../shared/shard-table.js';
import { byName, Counter, COUNTER_COUNT, MESSAGING_COUNTERS, type MessagingCounterName } from '../shared/shard-counters.js';
import type { Logger } from '../util/logger.js';
import { alignedDelay } from '../util/timer-grid.js';

export class StatsSampler {
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private previous: Float64Array | null = null;
  private previousAt = 0;
  private lastLogAt = Date.now();
  private lastLogTotals: Float64Array | null = null;

  constructor(
    private readonly table: ShardTable,
    private readonly monitoring: Config['websocket']['monitoring'],
    private readonly log: Logger,
    /** The broker's and its shard link's live counters (same thread), copied into the table for /stats. */
    private readonly messaging: () => Readonly<Record<MessagingCounterName, number>>,
    private readonly hub: MetricsHub | null = null,
  ) {}

  start(): void {
    if (!this.monitoring.enable_metrics_collection) return;
    this.hub?.start();
    // Rendered at once, so that /metrics answers from the first scrape on.
    this.hub?.publish();
    this.tick();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.hub?.stop();
  }

  /** The next sample on the grid of metrics_collection_interval (timer-grid.ts: one wake-up with the thread's other periodic timers). */
  private tick(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.tick(); // armed first: a sample that throws must not end the sampling, as setInterval would not
      this.sample();
    }, alignedDelay(this.monitoring.metrics_collection_interval * 1000));
    this.timer.unref();
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
    this.hub?.publishSpread(now);
    const logEvery = this.monitoring.log_interval * 1000;
    if (logEvery > 0 && now - this.lastLogAt >= logEvery) this.logLine(now, totals);
  }

  private logLine(now: number, totals: Float64Array): void {
    const seconds = (now - this.lastLogAt) / 1000;
    const since = this.lastLogTotals;
    const perSecond = (counter: number): number => Math.round((totals[counter]! - (since?.[counter] ?? 0)) / seconds);
    this.lastLogAt = now;
    this.lastLogTotals = totals;
    const latency = this.hub?.takeLogWindow();
    const ms = (us: number): number => Math.round(us) / 1000;
    this.log.info(
      {
        connections: this.table.totalConnections(),
        frames_in_per_s: perSecond(Counter.frames_in),
        deliveries_per_s: perSecond(Counter.deliveries),
        pubs_per_s: perSecond(Counter.pubs),
        bytes_in_per_s: perSecond(Counter.bytes_in),
        bytes_out_per_s: perSecond(Counter.bytes_out),
        // Merged over every thread since the previous line: P50/P95/P99 in ms, and the count.
        latency_ms: latency
          ? Object.fromEntries(Object.entries(latency).map(([name, s]) => [name, { p50: ms(s.p50), p95: ms(s.p95), p99: ms(s.p99), count: s.count }]))
          : null,
        totals: byName(totals),
      },
      'stats',
    );
  }
}

/**
 * What one thread measures of itself: latency histograms (recorded on the hot path, one
 * recordValue per event, nothing allocated), its event-loop delay, utilisation and heap. When
 * the primary asks (once per metrics_collection_interval) it reports: the histograms since the
 * last report, encoded (then reset), and its own percentiles over that interval and since it
 * started; the primary merges the reports.
 */
import { getHeapStatistics } from 'node:v8';
import { monitorEventLoopDelay, performance, type IntervalHistogram } from 'node:perf_hooks';
import { epochMs } from './clock.js';
import { clampUs, newHistogram, sparseCounts, summarize, type Histogram } from './hdr.js';
import { Latency, LATENCIES, type LatencyKind, type LatencyRecorder } from './latencies.js';
import type { ThreadReport } from './report.js';

/** Node's event-loop delay timer, ms: 10 (its default) keeps an idle thread nearly asleep. */
const ELD_RESOLUTION_MS = 10;

/**
 * Percentiles at which Node's delay histogram (which cannot be sent or merged) is read and
 * re-recorded into an HDR histogram with the same count: exact at these percentiles for one
 * thread, within the grid's steps once merged.
 */
const ELD_GRID = [...Array.from({ length: 99 }, (_, i) => i + 1), 99.5, 99.9, 99.99, 100];

export class ThreadMetrics implements LatencyRecorder {
  private readonly interval: Histogram[] = LATENCIES.map(() => newHistogram(32));
  private readonly total: Histogram[] = LATENCIES.map(() => newHistogram(64));
  private eld: IntervalHistogram | null = null;
  private elu = performance.eventLoopUtilization();
  readonly startedAt = epochMs();

  since(kind: LatencyKind, fromEpochMs: number, count = 1): void {
    this.interval[kind]!.recordValueWithCount(clampUs((epochMs() - fromEpochMs) * 1000), count);
  }

  /** A duration measured on this thread's own clock, µs. */
  recordUs(kind: LatencyKind, us: number): void {
    this.interval[kind]!.recordValue(clampUs(us));
  }

  monitorEventLoop(): void {
    if (this.eld) return;
    this.eld = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS });
    this.eld.enable();
  }

  stop(): void {
    this.eld?.disable();
    this.eld = null;
  }

  /** The interval's figures; the interval histograms start over. */
  report(thread: number): ThreadReport {
    if (this.eld) foldEventLoopDelay(this.eld, this.interval[Latency.event_loop]!);
    const histograms: number[][] = [];
    const intervalSummaries = [];
    const totalSummaries = [];
    for (let kind = 0; kind < LATENCIES.length; kind++) {
      const h = this.interval[kind]!;
      this.total[kind]!.add(h);
      histograms.push(sparseCounts(h));
      intervalSummaries.push(summarize(h));
      totalSummaries.push(summarize(this.total[kind]!));
      h.reset();
    }
    const elu = performance.eventLoopUtilization(this.elu);
    this.elu = performance.eventLoopUtilization();
    const heap = getHeapStatistics();
    return {
      thread,
      startedAt: this.startedAt,
      at: epochMs(),
      histograms,
      interval: intervalSummaries,
      total: totalSummaries,
      heapUsed: heap.used_heap_size,
      heapTotal: heap.total_heap_size,
      heapLimit: heap.heap_size_limit,
      utilization: elu.utilization,
    };
  }
}

/** Moves what Node's delay monitor saw (ns, timer period included) into `into` (µs of delay), and resets it. */
function foldEventLoopDelay(eld: IntervalHistogram, into: Histogram): void {
  const count = eld.count;
  if (count > 0) {
    const periodNs = ELD_RESOLUTION_MS * 1e6;
    let recorded = 0;
    for (const p of ELD_GRID) {
      const upTo = Math.round((count * p) / 100);
      if (upTo > recorded) into.recordValueWithCount(clampUs((eld.percentile(p) - periodNs) / 1000), upTo - recorded);
      recorded = upTo;
    }
  }
  eld.reset();
}

/**
 * What one thread measures of itself: latencies (recorded on the hot path into counts per HDR
 * bucket, interval-counts.ts: one add per event, nothing allocated), its event-loop delay,
 * utilisation, heap and CPU. When the primary asks (once per metrics_collection_interval) it
 * reports: the counts since the last report as sparse counts (then cleared), and its own
 * percentiles over that interval and since it started; the primary merges the reports.
 */
import { getHeapStatistics } from 'node:v8';
import { performance } from 'node:perf_hooks';
import { epochMs, followWallClock } from './clock.js';
import { BucketCounts } from './bucket-counts.js';
import { clampUs, EMPTY_SUMMARY, summarizeSparse } from './hdr.js';
import { IntervalCounts } from './interval-counts.js';
import { Latency, LATENCIES, type LatencyKind, type LatencyRecorder } from './latencies.js';
import type { ThreadReport } from './report.js';
import { ThreadCpu } from './thread-cpu.js';
import { alignedDelay } from '../util/timer-grid.js';

/**
 * The event-loop delay probe's period, ms: a timer this often records how late it ran (beyond
 * the period) straight into the event_loop histogram. Node's monitorEventLoopDelay keeps its
 * own histogram, which cannot be merged: reading it at the 103 percentiles that rebuilt it as
 * an HDR histogram took 0.4-0.9 ms of native calls per report, on every thread's loop.
 * Why 50 and not 10: a sample is the rest of whatever holds the loop when the timer falls due,
 * so its distribution does not depend on the period, only the number of samples does (20 a
 * second per thread). At 10 ms the probes were most of an idle server's wake-ups, each about
 * 0.25 ms of CPU on our VMs: 3% of a core per thread.
 */
const PROBE_MS = 50;
/**
 * The period while the thread is idle (it ran less than IDLE_UTILIZATION of the last period):
 * an idle loop has no delay to find, and 20 probes a second were most of an idle thread's
 * wake-ups. A stall still shows, in full, as the lateness of the next probe; traffic brings
 * the period back to PROBE_MS within one idle period.
 */
const IDLE_PROBE_MS = 1000;
const IDLE_UTILIZATION = 0.02;

export class ThreadMetrics implements LatencyRecorder {
  private readonly interval = LATENCIES.map(() => new IntervalCounts());
  private readonly total = LATENCIES.map(() => new BucketCounts());
  private probe: NodeJS.Timeout | null = null;
  private probing = false;
  private elu = performance.eventLoopUtilization();
  /** Made on the thread that measures itself: /proc/thread-self is whoever opens it. */
  private readonly cpu = new ThreadCpu();
  private lastCpu = { seconds: this.cpu.seconds(), at: performance.now() };
  readonly startedAt = epochMs();

  since(kind: LatencyKind, fromEpochMs: number, count = 1): void {
    this.interval[kind]!.record(clampUs((epochMs() - fromEpochMs) * 1000), count);
  }

  /** A duration measured on this thread's own clock, µs. */
  recordUs(kind: LatencyKind, us: number): void {
    this.interval[kind]!.record(clampUs(us));
  }

  monitorEventLoop(): void {
    if (this.probing) return;
    this.probing = true;
    this.armProbe(PROBE_MS);
  }

  stop(): void {
    this.cpu.close();
    this.probing = false;
    if (this.probe) clearTimeout(this.probe);
    this.probe = null;
  }

  /**
   * One probe `period` ms from now, or while idle at the next second (timer-grid.ts: with the
   * thread's other periodic timers); the next one at PROBE_MS, or at IDLE_PROBE_MS while idle.
   */
  private armProbe(period: number): void {
    const armedAt = performance.now();
    const before = performance.eventLoopUtilization();
    const delay = period === IDLE_PROBE_MS ? alignedDelay(period) : period;
    this.probe = setTimeout(() => {
      this.interval[Latency.event_loop]!.record(clampUs((performance.now() - armedAt - delay) * 1000));
      if (this.probing) this.armProbe(performance.eventLoopUtilization(before).utilization < IDLE_UTILIZATION ? IDLE_PROBE_MS : PROBE_MS);
    }, delay);
    this.probe.unref();
  }

  /** The interval's figures; the interval histograms start over. */
  report(thread: number): ThreadReport {
    followWallClock();
    const histograms: number[][] = [];
    const intervalSummaries = [];
    const totalSummaries = [];
    for (let kind = 0; kind < LATENCIES.length; kind++) {
      const counts = this.interval[kind]!;
      if (counts.totalCount === 0) {
        histograms.push([]);
        intervalSummaries.push({ ...EMPTY_SUMMARY });
      } else {
        const { totalCount, maxValue } = counts;
        const pairs = counts.take();
        this.total[kind]!.add(pairs);
        histograms.push(pairs);
        intervalSummaries.push(summarizeSparse({ totalCount, maxValue }, pairs));
      }
      totalSummaries.push(this.total[kind]!.summary());
    }
    const elu = performance.eventLoopUtilization(this.elu);
    this.elu = performance.eventLoopUtilization();
    const heap = getHeapStatistics();
    const cpu = { seconds: this.cpu.seconds(), at: performance.now() };
    const cpuRatio = cpu.seconds < 0 || this.lastCpu.seconds < 0 || cpu.at <= this.lastCpu.at ? -1 : (cpu.seconds - this.lastCpu.seconds) / ((cpu.at - this.lastCpu.at) / 1000);
    this.lastCpu = cpu;
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
      cpuSeconds: cpu.seconds,
      cpuRatio,
    };
  }
}

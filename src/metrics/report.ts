/**
 * A thread's metrics report, and its layout as the fields of a METRICS record on the
 * shard-to-broker ring (src/link/records.ts): both ends import this module.
 *
 * Fields: [thread, startedAt, at, histograms[], interval[][], total[][], heapUsed, heapTotal,
 * heapLimit, utilization, cpuSeconds, cpuRatio], where histograms are the interval's HDR histograms in LATENCIES
 * order as sparse lists (hdr.ts checkSparseCounts; [] when empty) and interval/total are per latency the Summary as
 * [count, p50, p90, p95, p99, p999, max, mean] (µs).
 */
import type { Summary } from './hdr.js';
import { LATENCIES } from './latencies.js';

export interface ThreadReport {
  /** Shard index, or PRIMARY_THREAD. */
  thread: number;
  /** epochMs() when the thread's metrics started. */
  startedAt: number;
  /** epochMs() of the report. */
  at: number;
  /** The interval's counts as sparse lists (hdr.ts checkSparseCounts), in LATENCIES order. */
  histograms: number[][];
  /** This thread's own figures per latency: over the interval, and since it started. */
  interval: Summary[];
  total: Summary[];
  heapUsed: number;
  heapTotal: number;
  heapLimit: number;
  /** Event-loop utilisation over the interval, 0..1. */
  utilization: number;
  /** The thread's own CPU time since it started, s; -1 where Linux does not tell it (thread-cpu.ts). */
  cpuSeconds: number;
  /** Its CPU time over the interval / the interval (1: one core all the time); -1 where unknown. */
  cpuRatio: number;
}

export const PRIMARY_THREAD = -1;

const SUMMARY_KEYS = ['count', 'p50', 'p90', 'p95', 'p99', 'p999', 'max', 'mean'] as const;

export function reportToFields(r: ThreadReport): unknown[] {
  const pack = (s: Summary): number[] => SUMMARY_KEYS.map((key) => s[key]);
  return [r.thread, r.startedAt, r.at, r.histograms, r.interval.map(pack), r.total.map(pack), r.heapUsed, r.heapTotal, r.heapLimit, r.utilization, r.cpuSeconds, r.cpuRatio];
}

/** The report in a METRICS record; throws a TypeError on a malformed one. */
export function reportFromFields(f: unknown[]): ThreadReport {
  const [thread, startedAt, at, histograms, interval, total, heapUsed, heapTotal, heapLimit, utilization, cpuSeconds, cpuRatio] = f;
  const numbers = [thread, startedAt, at, heapUsed, heapTotal, heapLimit, utilization, cpuSeconds, cpuRatio];
  if (!numbers.every((n) => typeof n === 'number')) throw new TypeError('METRICS record: a number field is not a number');
  if (!isList<number[]>(histograms, (h) => Array.isArray(h) && h.every((n) => typeof n === 'number')) || !isList<number[]>(interval, isPacked) || !isList<number[]>(total, isPacked)) {
    throw new TypeError('METRICS record: histograms or summaries malformed');
  }
  const unpack = (values: number[]): Summary => Object.fromEntries(SUMMARY_KEYS.map((key, i) => [key, values[i]!])) as unknown as Summary;
  return {
    thread: thread as number,
    startedAt: startedAt as number,
    at: at as number,
    histograms,
    interval: interval.map(unpack),
    total: total.map(unpack),
    heapUsed: heapUsed as number,
    heapTotal: heapTotal as number,
    heapLimit: heapLimit as number,
    utilization: utilization as number,
    cpuSeconds: cpuSeconds as number,
    cpuRatio: cpuRatio as number,
  };
}

function isList<T>(value: unknown, each: (item: unknown) => boolean): value is T[] {
  return Array.isArray(value) && value.length === LATENCIES.length && value.every(each);
}

function isPacked(value: unknown): boolean {
  return Array.isArray(value) && value.length === SUMMARY_KEYS.length && value.every((n) => typeof n === 'number');
}

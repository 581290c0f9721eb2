/**
 * HDR latency histograms for the load tester and the benchmarks. Values are microseconds.
 * Each loadgen thread records into its own histograms, encodes them (compressed base64, the
 * HdrHistogram interchange format) and posts the strings; the main thread decodes and adds
 * them, so every percentile in a report comes from one merged histogram, never from averaging
 * per-thread percentiles.
 */
import * as hdr from 'hdr-histogram-js';
import type { Histogram } from 'hdr-histogram-js';

/** 1 µs .. 10 min, 3 significant digits: 0.1% error at every magnitude. */
const LOWEST_US = 1;
const HIGHEST_US = 600 * 1_000_000;

export function newHistogram(): Histogram {
  return hdr.build({
    lowestDiscernibleValue: LOWEST_US,
    highestTrackableValue: HIGHEST_US,
    numberOfSignificantValueDigits: 3,
    bitBucketSize: 32,
    autoResize: true,
    useWebAssembly: false,
  });
}

/** Records a latency, clamped into the trackable range (a negative value is clock jitter). */
export function recordUs(h: Histogram, us: number): void {
  h.recordValue(us < LOWEST_US ? LOWEST_US : us > HIGHEST_US ? HIGHEST_US : Math.round(us));
}

/** Records a latency given in milliseconds, clamped like recordUs. */
export function recordMs(h: Histogram, ms: number): void {
  recordUs(h, ms * 1000);
}

export function encodeHistogram(h: Histogram): string {
  return hdr.encodeIntoCompressedBase64(h);
}

/** Decodes each encoded histogram and adds it into one. Empty strings are skipped. */
export function mergeEncoded(encoded: Iterable<string>): Histogram {
  const merged = newHistogram();
  for (const e of encoded) {
    if (!e) continue;
    const h = hdr.decodeFromCompressedBase64(e, 32, false);
    merged.add(h);
  }
  return merged;
}

/** The figures a report shows for one latency metric, in milliseconds. */
export interface LatencySummary {
  count: number;
  minMs: number;
  meanMs: number;
  p50Ms: number;
  p90Ms: number;
  p95Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  stdDevMs: number;
}

const ms = (us: number): number => Math.round(us) / 1000;

export function summarize(h: Histogram): LatencySummary {
  if (h.totalCount === 0) {
    return { count: 0, minMs: 0, meanMs: 0, p50Ms: 0, p90Ms: 0, p95Ms: 0, p99Ms: 0, p999Ms: 0, maxMs: 0, stdDevMs: 0 };
  }
  // Percentiles are the histogram's equivalent values (within 0.1%); clamping them to the
  // max keeps P99 <= max when both fall in the top bucket.
  const max = h.maxValue;
  const at = (p: number): number => Math.min(h.getValueAtPercentile(p), max);
  return {
    count: h.totalCount,
    minMs: ms(h.minNonZeroValue),
    meanMs: ms(h.mean),
    p50Ms: ms(at(50)),
    p90Ms: ms(at(90)),
    p95Ms: ms(at(95)),
    p99Ms: ms(at(99)),
    p999Ms: ms(at(99.9)),
    maxMs: ms(max),
    stdDevMs: ms(h.stdDeviation),
  };
}

/**
 * The percentile distribution for plotting, as HdrHistogram's plotter draws it: x is
 * 1/(1-p) on a log axis (so 90%, 99%, 99.9% are evenly spaced). Points are taken at
 * fixed percentiles rather than from the iterator, which keeps the JSON small.
 */
export const PLOT_PERCENTILES = [
  0, 10, 20, 30, 40, 50, 55, 60, 65, 70, 75, 80, 85, 87.5, 90, 92.5, 95, 96, 97, 97.5, 98, 98.5, 99, 99.25, 99.5, 99.75, 99.9,
  99.95, 99.99, 99.999, 100,
];

export function percentileCurve(h: Histogram): Array<[percentile: number, ms: number]> {
  if (h.totalCount === 0) return [];
  const max = h.maxValue;
  return PLOT_PERCENTILES.map((p) => [p, ms(p === 100 ? max : Math.min(h.getValueAtPercentile(p), max))]);
}

// Latency histograms in microseconds, summarised in milliseconds.
import { build, type Histogram } from 'hdr-histogram-js';

/** Values are microseconds, from 1 µs to 60 s, at 3 significant digits. */
export function microsecondHistogram(): Histogram {
  return build({
    bitBucketSize: 64,
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60_000_000,
    numberOfSignificantValueDigits: 3,
  });
}

export interface LatencySummaryMs {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export function summariseMs(histogram: Histogram): LatencySummaryMs {
  const ms = (us: number): number => Math.round(us) / 1000;
  return {
    count: histogram.totalCount,
    p50: ms(histogram.getValueAtPercentile(50)),
    p95: ms(histogram.getValueAtPercentile(95)),
    p99: ms(histogram.getValueAtPercentile(99)),
    p999: ms(histogram.getValueAtPercentile(99.9)),
    max: ms(histogram.maxValue),
    mean: ms(histogram.mean),
  };
}

/** Records a duration in milliseconds, clamped into the trackable range. */
export function recordMs(histogram: Histogram, ms: number): void {
  histogram.recordValue(Math.min(60_000_000, Math.max(1, Math.round(ms * 1000))));
}

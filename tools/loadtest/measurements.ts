/**
 * What one loadgen thread measures: its counters, its HDR histograms and the measurement
 * window they are counted in. The sender, the receiver and the connection pool of the thread
 * all record here; the generator hands it to the main thread.
 */
import type { Histogram } from 'hdr-histogram-js';
import { encodeHistogram, newHistogram, recordUs } from '../lib/histogram.js';
import { emptyCounters, HISTOGRAM_NAMES, type Counters, type EncodedHistograms } from './types.js';

/** A scheduled message that leaves this late (not held by its window) means the generator slipped. */
export const LATE_SEND_US = 10_000;

export class Measurements {
  readonly counters: Counters = emptyCounters();
  readonly h = Object.fromEntries(HISTOGRAM_NAMES.map((name) => [name, newHistogram()])) as Record<keyof EncodedHistograms, Histogram>;
  /** Fan-out latency of every delivery since the last report, window or not: the time series. */
  readonly interval: Histogram = newHistogram();
  startUs = Number.POSITIVE_INFINITY;
  endUs = Number.POSITIVE_INFINITY;

  /** Whether a message due at `dueUs` is measured. */
  inWindow(dueUs: number): boolean {
    return dueUs >= this.startUs && dueUs < this.endUs;
  }

  /** The generator's own slip: how late a message due at `dueUs` left. */
  noteLag(dueUs: number, nowUs: number): void {
    if (!this.inWindow(dueUs)) return;
    const lag = nowUs - dueUs;
    recordUs(this.h.scheduleLag, lag);
    if (lag > LATE_SEND_US) this.counters.lateSends++;
  }

  countErr(code: string): void {
    this.counters.errFrames[code] = (this.counters.errFrames[code] ?? 0) + 1;
  }

  /** The interval histogram, encoded, and a fresh one started. */
  takeInterval(): string {
    const encoded = encodeHistogram(this.interval);
    this.interval.reset();
    return encoded;
  }

  encodeAll(): EncodedHistograms {
    return Object.fromEntries(HISTOGRAM_NAMES.map((name) => [name, encodeHistogram(this.h[name])])) as unknown as EncodedHistograms;
  }
}

/**
 * One clock for latencies that start in one thread and end in another: epoch milliseconds with
 * sub-millisecond precision. Each thread's `performance.timeOrigin` is the epoch time of its own
 * start, read together with the monotonic clock, so `timeOrigin + now()` agrees across threads
 * to a few microseconds (Date.now() alone has 1 ms steps, too coarse for a 50 µs delivery).
 *
 * The monotonic clock does not follow a step of the wall clock (NTP stepping it, a VM restored
 * from a snapshot): until followWallClock() sees it, epochMs() stays off by the step, and so do
 * latencies between two nodes of a cluster, whose records carry it.
 */
import { performance } from 'node:perf_hooks';

/** A drift from the wall clock past this is a step, not NTP's slewing (which moves both clocks). */
const STEP_MS = 100;

let origin = performance.timeOrigin;

/** Epoch milliseconds, fractional. */
export function epochMs(): number {
  return origin + performance.now();
}

/** epochMs() of a `performance.now()` reading already taken (one clock read for both). */
export function epochMsAt(monotonicMs: number): number {
  return origin + monotonicMs;
}

/** Follows a step of the wall clock, if there was one since; each thread calls it every metrics interval. */
export function followWallClock(): void {
  const drift = Date.now() - epochMs();
  if (drift > STEP_MS || drift < -STEP_MS) origin += drift;
}

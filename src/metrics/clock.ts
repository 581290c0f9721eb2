/**
 * One clock for latencies that start in one thread and end in another: epoch milliseconds with
 * sub-millisecond precision. Each thread's `performance.timeOrigin` is the epoch time of its own
 * start, read together with the monotonic clock, so `timeOrigin + now()` agrees across threads
 * to a few microseconds (Date.now() alone has 1 ms steps, too coarse for a 50 µs delivery).
 */
import { performance } from 'node:perf_hooks';

const ORIGIN = performance.timeOrigin;

/** Epoch milliseconds, fractional. */
export function epochMs(): number {
  return ORIGIN + performance.now();
}

/**
 * One clock for every thread of the load tester: the process's monotonic clock in
 * microseconds. `process.hrtime()` reads CLOCK_MONOTONIC, which is shared by all worker
 * threads of a process (performance.now() is not: each thread has its own time origin), so a
 * timestamp written into a payload by one loadgen thread can be subtracted from the arrival
 * time seen by another. The array form avoids a BigInt allocation per call.
 */
export function monoUs(): number {
  const t = process.hrtime();
  return t[0] * 1e6 + t[1] / 1e3;
}

export const US_PER_MS = 1000;
export const US_PER_S = 1_000_000;

/**
 * The delay to the next multiple of `periodMs` on the wall clock. A thread whose periodic timers
 * all fall due on one grid (1 s, and its 250 ms and 50 ms divisions) runs them in one wake-up
 * instead of one each: idle, most of a thread's wake-ups were such timers, each about 0.25 ms
 * of CPU on our VMs. A boundary closer than a quarter period is skipped, so that a timer that
 * fires a little before its boundary by another clock does not run again at once.
 */
export function alignedDelay(periodMs: number, now = Date.now()): number {
  const delay = periodMs - (now % periodMs);
  return delay < periodMs / 4 ? delay + periodMs : delay;
}

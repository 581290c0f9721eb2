/**
 * Sends on schedule to within a fraction of a millisecond, so that the corrected latencies
 * measure the server and not Node's timers.
 *
 * Node's timers have a resolution of one millisecond: a loop woken by setTimeout(1) sends
 * each message anywhere from 0 to 1+ ms after it was due, and every corrected latency (counted
 * from the due time) carries that lag. A loadgen thread is a worker thread, so it may block:
 *
 *   - next message more than APPROACH_US away: a 1 ms timer (the event loop reads sockets);
 *   - closer than that: block in Atomics.wait for short slices (SLICE_US) and let the event
 *     loop run between them, so replies that arrive meanwhile are read at most a slice late;
 *   - the last SPIN_LEAD_US: spin on the clock to the due time and send. A thread that blocks
 *     until the due time depends on being woken and given a core at that moment, which here
 *     took 0.4-1 ms now and then even under SCHED_FIFO (a 50 µs Atomics.wait returning that
 *     late; a kernel block-I/O worker holding the core); a thread already spinning is on its
 *     core. The lead was chosen by measurement, with the threads real-time (realtime.ts) and
 *     the schedule's grid: the quick suite's lag P99 was under 0.1 ms in 5 of 12 scenario
 *     runs with 500 µs (0.06-0.28 ms) and in 16 of 18 with 1 ms (0.04-0.14 ms).
 *     Spinning burns CPU, so it has a budget (SPIN_SHARE of the wall time: the moderate
 *     scenario spins 6.7% of each thread's time); without budget the thread blocks to the due
 *     time and takes the wake-up's delay.
 *
 * The lag that remains (sent − due) is measured for every message and reported beside the
 * latencies it could distort (measurements.ts).
 */
import { monoUs } from './clock.js';

/** Closer than this to the next due time, a 1 ms timer could fire after it: wait in slices. */
export const APPROACH_US = 2_000;
/** The longest one blocking wait before the event loop runs again. */
export const SLICE_US = 50;
/** Within this of the due time the thread spins rather than blocks (see above). */
export const SPIN_LEAD_US = 1_000;
/** Spinning may take this share of the wall time, at most (a token bucket)... */
export const SPIN_SHARE = 0.08;
/** ...saved up to this much. */
export const SPIN_BUCKET_US = 10_000;

export type PaceStep =
  /** Nothing due soon (or nothing scheduled): a 1 ms timer, the event loop runs meanwhile. */
  | { kind: 'timer' }
  /** Due soon: block this long, then let the event loop run. */
  | { kind: 'slice'; waitUs: number }
  /** Due within the lead: spin to `untilUs`, then send. */
  | { kind: 'spin'; untilUs: number }
  /** Due within the lead, no spin budget left: block this long, then send. */
  | { kind: 'wait'; waitUs: number }
  /** Due now, or overdue: send. */
  | { kind: 'send' };

/**
 * The next step towards a message due at `dueUs` (NaN: none scheduled), given how far ahead
 * of it blocking must stop (`leadUs`) and the spin budget left.
 */
export function planStep(nowUs: number, dueUs: number, leadUs: number, spinTokensUs: number): PaceStep {
  const remaining = dueUs - nowUs;
  if (!(remaining <= APPROACH_US)) return { kind: 'timer' };
  if (remaining <= 0) return { kind: 'send' };
  if (remaining > leadUs) return { kind: 'slice', waitUs: Math.min(SLICE_US, remaining - leadUs) };
  if (remaining <= spinTokensUs) return { kind: 'spin', untilUs: dueUs };
  return { kind: 'wait', waitUs: remaining };
}

export class Pacer {
  /** Time spent blocked and spinning on purpose: not work, so not event-loop load. */
  blockedUs = 0;
  spunUs = 0;
  private readonly cell = new Int32Array(new SharedArrayBuffer(4));
  private tokensUs = SPIN_BUCKET_US;
  private refilledAtUs: number;

  constructor(private readonly clock: () => number = monoUs) {
    this.refilledAtUs = clock();
  }

  plan(nowUs: number, dueUs: number): PaceStep {
    this.tokensUs = Math.min(SPIN_BUCKET_US, this.tokensUs + (nowUs - this.refilledAtUs) * SPIN_SHARE);
    this.refilledAtUs = nowUs;
    return planStep(nowUs, dueUs, SPIN_LEAD_US, this.tokensUs);
  }

  /** Blocks the thread for about `us` (Atomics.wait: a worker thread may). */
  block(us: number): void {
    const start = this.clock();
    Atomics.wait(this.cell, 0, 0, us / 1000);
    this.blockedUs += this.clock() - start;
  }

  /** Spins on the clock until `untilUs`. */
  spinUntil(untilUs: number): void {
    const start = this.clock();
    let now = start;
    while (now < untilUs) now = this.clock();
    this.spunUs += now - start;
    this.tokensUs -= now - start;
  }
}

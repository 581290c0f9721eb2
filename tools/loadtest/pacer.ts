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
 *   - within the lead (how much Atomics.wait oversleeps here, learnt as it goes): spin on the
 *     clock to the due time and send. Spinning burns CPU, so it has a budget (SPIN_SHARE of
 *     the wall time); without budget the thread blocks to the due time and takes the oversleep.
 *
 * The lag that remains (sent − due) is measured for every message and reported beside the
 * latencies it could distort (measurements.ts).
 */
import { monoUs } from './clock.js';

/** Closer than this to the next due time, a 1 ms timer could fire after it: wait in slices. */
export const APPROACH_US = 2_000;
/** The longest one blocking wait before the event loop runs again (it oversleeps by the lead). */
export const SLICE_US = 50;
/** The spin before a send never exceeds this, whatever the measured oversleep. */
export const MAX_LEAD_US = 300;
/** The first guess of the oversleep, before any wait has been measured. */
const INITIAL_OVERSLEEP_US = 80;
/** Margin over the oversleep estimate when choosing where to stop blocking and start spinning. */
const LEAD_MARGIN_US = 10;
/** Spinning may take this share of the wall time, at most (a token bucket)... */
export const SPIN_SHARE = 0.05;
/** ...saved up to this much. */
const SPIN_BUCKET_US = 10_000;

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

/**
 * How much a blocking wait oversleeps, as a high quantile: the estimate jumps a tenth of the
 * way up to a longer oversleep and creeps a hundredth of the way down to a shorter one, which
 * settles near the 90th percentile.
 */
export class OversleepEstimate {
  us = INITIAL_OVERSLEEP_US;
  note(oversleepUs: number): void {
    const d = oversleepUs - this.us;
    this.us += d > 0 ? 0.1 * d : 0.01 * d;
    if (this.us < 0) this.us = 0;
  }
  /** Where blocking stops and spinning starts, before a due time. */
  get leadUs(): number {
    return Math.min(MAX_LEAD_US, this.us + LEAD_MARGIN_US);
  }
}

export class Pacer {
  readonly oversleep = new OversleepEstimate();
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
    return planStep(nowUs, dueUs, this.oversleep.leadUs, this.tokensUs);
  }

  /** Blocks the thread for about `us` (Atomics.wait: a worker thread may) and learns the oversleep. */
  block(us: number): void {
    const start = this.clock();
    Atomics.wait(this.cell, 0, 0, us / 1000);
    const slept = this.clock() - start;
    this.blockedUs += slept;
    this.oversleep.note(slept - us);
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

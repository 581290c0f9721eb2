/**
 * Wake-ups at the times of the scheduled messages this node accepted, so that they go out at
 * their `at` rather than at the next sweep (cluster.sweep_interval): each wake-up sweeps, and the
 * SWEEP script hands the message to whichever node runs it first. Should this node be gone by
 * then, the others' sweeps take it as before. One timer, for the earliest time.
 */
import { TimerHeap } from '../broker/heap.js';

/** setTimeout's longest wait; a later time is reached in steps. */
const MAX_DELAY_MS = 2 ** 31 - 1;
/** Times kept at once (about 50 bytes each); past it a scheduled send waits for a sweep, as on a node that did not store it. */
const MAX_TIMES = 100_000;

export class Wakeups {
  private readonly times = new TimerHeap<null>();
  private timer: NodeJS.Timeout | null = null;
  private armedFor = Infinity;

  constructor(private readonly due: () => void) {}

  /** Wake up at `at` (epoch ms). */
  add(at: number): void {
    if (this.times.size >= MAX_TIMES) return;
    this.times.push(at, null, 0);
    if (at < this.armedFor) this.arm();
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.armedFor = Infinity;
  }

  private arm(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.armedFor = this.times.nextTime();
    if (this.armedFor === Infinity) return;
    this.timer = setTimeout(() => this.fire(), Math.min(Math.max(0, this.armedFor - Date.now()), MAX_DELAY_MS));
    this.timer.unref();
  }

  private fire(): void {
    const now = Date.now();
    let woke = false;
    while (this.times.popDue(now) !== undefined) woke = true;
    if (woke) this.due();
    this.arm();
  }
}

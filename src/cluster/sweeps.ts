/**
 * When a node sweeps (SWEEP takes the stored messages whose time came: scheduled, past their
 * ack deadline, expired): every cluster.sweep_interval, and also at the time of each scheduled
 * message this node stored, so that it goes out at its `at` rather than up to an interval later
 * (the script hands it to whichever node sweeps first; should this node be gone by then, the
 * others' interval sweeps take it). One timer for the earliest such time; one sweep at a time,
 * and one more after it when asked meanwhile.
 */
import { TimerHeap } from '../broker/heap.js';

/** setTimeout's longest wait; a later time is reached in steps. */
const MAX_DELAY_MS = 2 ** 31 - 1;
/** Times kept at once (about 50 bytes each); past it a scheduled send waits for an interval sweep, as on a node that did not store it. */
const MAX_TIMES = 100_000;

export class Sweeps {
  private interval: NodeJS.Timeout | null = null;
  private readonly times = new TimerHeap<null>();
  private timer: NodeJS.Timeout | null = null;
  private armedFor = Infinity;
  private sweeping = false;
  /** A sweep was asked for while one ran: one more follows it. */
  private again = false;
  private stopped = false;

  /** `sweep`: one SWEEP and what follows it; `allowed`: whether this node sweeps now (Redis up). */
  constructor(
    private readonly sweep: () => Promise<void>,
    private readonly allowed: () => boolean,
  ) {}

  start(intervalMs: number): void {
    this.interval = setInterval(() => this.now(), intervalMs);
  }

  /** No more sweeps (stopping, or draining: the other nodes sweep). */
  stop(): void {
    this.stopped = true;
    if (this.interval !== null) clearInterval(this.interval);
    if (this.timer !== null) clearTimeout(this.timer);
    this.interval = this.timer = null;
    this.armedFor = Infinity;
  }

  /** A scheduled message this node stored falls due at `at` (epoch ms). */
  at(at: number): void {
    if (this.stopped || this.times.size >= MAX_TIMES) return;
    this.times.push(at, null, 0);
    if (at < this.armedFor) this.arm();
  }

  private now(): void {
    if (this.stopped || !this.allowed()) return;
    if (this.sweeping) {
      this.again = true;
      return;
    }
    this.sweeping = true;
    this.sweep()
      .catch(() => {}) // Redis went away: the link reports it
      .finally(() => {
        this.sweeping = false;
        if (this.again) {
          this.again = false;
          this.now();
        }
      });
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
    let due = false;
    while (this.times.popDue(now) !== undefined) due = true;
    if (due) this.now();
    this.arm();
  }
}

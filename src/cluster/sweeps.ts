/**
 * When a node sweeps (SWEEP takes the stored messages whose time came: scheduled, past their
 * ack deadline, expired): every cluster.sweep_interval, and also at the time of each scheduled
 * message this node stored and at the ack deadline of each delivery it made, so that the message
 * goes out (again) at that time rather than up to an interval later (the script hands it to
 * whichever node sweeps first; should this node be gone by then, the others' interval sweeps take
 * it). One timer for the earliest such time; one sweep at a time, and one more after it when
 * asked meanwhile.
 *
 * Times are kept on a GRID_MS grid, each once: a node delivering thousands of messages a second
 * arms at most one sweep per grid step, not one per message (a single process's broker has the
 * same 50 ms tick). A deadline is not taken back when its message is acknowledged first (the ack
 * may reach any node): the sweep then finds nothing of it, which costs one SWEEP call.
 */
import { TimerHeap, type HeapItem } from '../broker/heap.js';

/** setTimeout's longest wait; a later time is reached in steps. */
const MAX_DELAY_MS = 2 ** 31 - 1;
/** Times kept at once (about 100 bytes each); past it a time is not kept: its message waits for an interval sweep, as on another node. */
const MAX_TIMES = 100_000;
/** Sweep times are rounded up to this step, so that one sweep serves every message due within it. */
export const GRID_MS = 50;

export class Sweeps {
  private interval: NodeJS.Timeout | null = null;
  private readonly times = new TimerHeap<HeapItem>();
  /** The times in `times`, each once. */
  private readonly kept = new Set<number>();
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

  /** A message this node stored or delivered falls due at `at` (epoch ms): its `at`, or its ack deadline. */
  at(at: number): void {
    const time = Math.ceil(at / GRID_MS) * GRID_MS;
    if (this.stopped || !Number.isFinite(time) || this.kept.has(time) || this.kept.size >= MAX_TIMES) return;
    this.kept.add(time);
    this.times.push({ heapTime: time, heapIndex: -1 }, time);
    if (time < this.armedFor) this.arm();
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
    for (let t = this.times.popDue(now); t !== undefined; t = this.times.popDue(now)) {
      this.kept.delete(t.heapTime);
      due = true;
    }
    if (due) this.now();
    this.arm();
  }
}

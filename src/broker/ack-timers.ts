/**
 * The broker's clocks: the ack deadline of every delivery in flight (with exponential backoff
 * per attempt), the schedule of sends with a future `at`, the expiry (delivery.ttl) of messages
 * waiting for a recipient, and the one timer armed for whichever comes first. Also who holds
 * what: each user's count of deliveries awaiting its ack, which `least_connections` reads.
 *
 * Waiting messages expire without a timer each: they join one more deadline list (after the
 * ack lists), in the order they start waiting, so it stays in deadline order by construction.
 * An entry is in at most one list: its ack deadline's while in flight, the expiry list while
 * waiting.
 */
import { performance } from 'node:perf_hooks';
import type { Config } from '../config/schema.js';
import { DeadlineLists } from './deadlines.js';
import { TimerHeap } from './heap.js';
import type { Entry } from './queues.js';

export interface AckTimerHandlers {
  /** A scheduled send is due. */
  scheduled(entry: Entry): void;
  /** Ack deadlines passed: what the shards wrote before now is read first (acks that came in time among it). */
  catchUp?(): void;
  /** A delivery's ack deadline passed. */
  unacknowledged(entry: Entry): void;
  /** A waiting message outlived delivery.ttl. */
  expired(entry: Entry): void;
  /** `holder` has one delivery fewer awaiting its ack (acknowledged, dead-lettered, parked, or delivered to another): its window has room. */
  released?(holder: string): void;
}

/** The longest delay setTimeout takes; a longer one fires at once (with a TimeoutOverflowWarning), which would spin. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** The most of the broker's time one wake-up spends on what is due; what is left waits for the next turn. */
const TICK_SLICE_MS = 10;
/** Deadlines taken from their lists at a time, within the slice. */
const DUE_CHUNK = 256;

export class AckTimers {
  private readonly deadlines = new DeadlineLists<Entry>();
  private readonly schedule = new TimerHeap<Entry>();
  private readonly inflight = new Map<string, number>();
  /** Bytes of data of each user's deliveries awaiting an ack (Delivery's window). */
  private readonly inflightBytes = new Map<string, number>();
  /** Armed for the next ack deadline or scheduled send; none while nothing waits. */
  private timer: NodeJS.Timeout | null = null;
  private wakeAt = Infinity;
  private readonly tickMs: number;
  private stopped = false;
  readonly inflightOf = (user: string): number => this.inflight.get(user) ?? 0;
  readonly inflightBytesOf = (user: string): number => this.inflightBytes.get(user) ?? 0;

  /** Index of the expiry list, after every ack list. */
  private readonly waitList: number;
  private readonly ttlMs: number;

  /** Deliveries awaiting an ack, all users (sampled once per metrics interval). */
  inflightTotal(): number {
    let total = 0;
    for (const count of this.inflight.values()) total += count;
    return total;
  }

  constructor(
    private readonly delivery: Config['websocket']['delivery'],
    private readonly handlers: AckTimerHandlers,
  ) {
    this.tickMs = Math.max(5, Math.min(50, (delivery.ack_timeout * 1000) / 4));
    this.waitList = this.capList() + 1;
    this.ttlMs = delivery.ttl * 1000;
  }

  /**
   * `entry` was just delivered to `holder` (attempt `entry.m.attempts`): counts it against the
   * holder and starts its ack deadline.
   */
  hold(entry: Entry, holder: string): void {
    this.release(entry);
    entry.holder = holder;
    this.inflight.set(holder, (this.inflight.get(holder) ?? 0) + 1);
    this.inflightBytes.set(holder, (this.inflightBytes.get(holder) ?? 0) + entry.m.bytes);
    this.startDeadline(entry);
  }

  /** `entry`'s ack deadline passed without counting against it: it waits as long again, still in flight to its holder. */
  postpone(entry: Entry): void {
    this.startDeadline(entry);
  }

  /** Into its attempt's deadline list (out of any other). */
  private startDeadline(entry: Entry): void {
    const attempt = entry.m.attempts;
    // Attempts past the cap all wait max_backoff: they share the cap's list, which stays in order.
    // So do attempts beyond max_attempts (a count loaded from before a crash, or from a larger
    // max_attempts), which must not land in another list.
    const wait = this.ackWaitS(attempt);
    const list = wait === this.delivery.max_backoff ? this.capList() : Math.min(attempt - 1, this.capList());
    this.deadlines.add(entry, list, Date.now() + wait * 1000);
    this.arm();
  }

  /** How long attempt `attempt` of a delivery waits for its ack, s: ack_timeout, times backoff_multiplier per attempt before, at most max_backoff. */
  ackWaitS(attempt: number): number {
    const { ack_timeout, backoff_multiplier, max_backoff } = this.delivery;
    return Math.min(max_backoff, ack_timeout * backoff_multiplier ** (attempt - 1));
  }

  /** `entry` no longer awaits an ack or its time (acknowledged, parked, dead-lettered, evicted, or delivered anew). */
  release(entry: Entry): void {
    this.deadlines.remove(entry);
    this.schedule.remove(entry);
    const holder = entry.holder;
    if (holder === null) return;
    const left = (this.inflight.get(holder) ?? 1) - 1;
    if (left <= 0) {
      this.inflight.delete(holder);
      this.inflightBytes.delete(holder);
    } else {
      this.inflight.set(holder, left);
      this.inflightBytes.set(holder, (this.inflightBytes.get(holder) ?? 0) - entry.m.bytes);
    }
    entry.holder = null;
    this.handlers.released?.(holder);
  }

  /**
   * `entry` waits for a recipient from now on (or since `since`, for a message loaded at
   * start-up: add those oldest first): it expires delivery.ttl after that. arm() when done.
   */
  wait(entry: Entry, since = Date.now()): void {
    this.release(entry);
    if (this.ttlMs > 0) this.deadlines.add(entry, this.waitList, since + this.ttlMs);
  }

  /** `entry` is due at `at`; arm() when done adding (start-up adds many). */
  scheduleAt(entry: Entry, at: number): void {
    this.schedule.push(entry, at);
  }

  /**
   * Sleeps until the next ack deadline or scheduled send, and not at all while none waits (no
   * polling while idle). Wake times are rounded up to tickMs, so a burst of deadlines costs one
   * timer per tick rather than one each, and nothing is handled early.
   */
  arm(): void {
    if (this.stopped) return;
    const next = Math.min(this.schedule.nextTime(), this.deadlines.nextDeadline());
    if (next === Infinity) return;
    const wakeAt = Math.ceil(next / this.tickMs) * this.tickMs;
    if (this.timer !== null && wakeAt >= this.wakeAt) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.wakeAt = wakeAt;
    // A wake-up beyond what setTimeout can wait is reached in steps: the early one finds nothing due and re-arms.
    this.timer = setTimeout(() => {
      this.timer = null;
      this.wakeAt = Infinity;
      this.tick();
      this.arm();
    }, Math.min(MAX_TIMER_MS, Math.max(0, wakeAt - Date.now())));
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /**
   * Handles what is due, for at most TICK_SLICE_MS: the rest (still due) re-arms the timer at
   * once, so that the shards' records are read in between. Scheduled sends, ack deadlines and
   * expiries of a whole burst share one millisecond: all in one turn, 200,000 sends scheduled
   * for one moment held the broker 8.1 s, and every client's send with it.
   */
  private tick(): void {
    const now = Date.now();
    const until = performance.now() + TICK_SLICE_MS;
    const inTime = (): boolean => performance.now() < until;
    for (let due = this.schedule.popDue(now); due; due = inTime() ? this.schedule.popDue(now) : undefined) this.handlers.scheduled(due);
    // An ack that came in time may still wait unread behind a backlog (the broker reads its
    // rings a budget at a time): read up to now first. Handlers skip what it settled.
    if (inTime()) this.handleDue(now, 0, this.waitList, inTime, (entry) => this.handlers.unacknowledged(entry), () => this.handlers.catchUp?.());
    if (inTime()) this.handleDue(now, this.waitList, this.waitList + 1, inTime, (entry) => this.handlers.expired(entry));
  }

  /** Hands the entries of deadline lists [from, to) due by `now` to `handle`, a chunk at a time while `inTime()`; `first` runs once before any. */
  private handleDue(now: number, from: number, to: number, inTime: () => boolean, handle: (entry: Entry) => void, first?: () => void): void {
    for (let chunk = this.deadlines.takeDue(now, from, to, DUE_CHUNK); chunk.length > 0; chunk = inTime() ? this.deadlines.takeDue(now, from, to, DUE_CHUNK) : []) {
      first?.();
      first = undefined;
      for (const entry of chunk) handle(entry);
    }
  }

  /** Index of the deadline list for waits capped at max_backoff (after every uncapped attempt's list). */
  private capList(): number {
    return this.delivery.max_attempts;
  }
}

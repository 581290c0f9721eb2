/**
 * Open-loop send schedules with coordinated-omission correction.
 *
 * A closed-loop tester (send, wait for the answer, send the next) stops sending while the
 * server stalls, so the stall shows up as one slow sample instead of the hundreds of users
 * who would have been waiting: it "coordinates" with the server and omits the bad samples.
 * Here every message has a due time fixed in advance by the rate (as wrk2 does), it is sent
 * at its due time whatever happened to earlier ones, and its latency is counted from the due
 * time. When a message cannot leave on time — its connection's in-flight window is full, a
 * ping is still unanswered, or the generator's own loop was late — it leaves later but keeps
 * its due time, so the wait is part of what it reports.
 *
 * One `RateStream` per message kind per thread serves all of the thread's connections in
 * turn: the thread's aggregate rate is (per-connection rate × active connections), so each
 * connection sends at its own rate and the thread needs one timer loop, not one per message.
 */
/**
 * Where the grids start: half a millisecond past the clock's zero. The kernel's timer tick
 * falls on whole milliseconds of the monotonic clock, and a message due on a tick lost
 * 80-140 µs to its interrupt (every `send` of the baseline scenario did: its grid points were
 * whole multiples of 100 ms). Scenario rates make whole-millisecond intervals, so their grid
 * points now fall between ticks.
 */
export const GRID_ORIGIN_US = 500;

export class RateStream {
  /** Due time of the next message, µs; NaN while the stream has no rate. */
  nextDueUs = Number.NaN;
  /** Due time of the last message fired (or the stream's start). */
  private prevDueUs = Number.NaN;
  /** The interval `nextDueUs` was placed with: a different one moves it to the new grid. */
  private gridIntervalUs = Number.NaN;
  private multiplier = 1;

  /**
   * Due times lie on a grid fixed to the clock, `GRID_ORIGIN_US + (j + phase) × interval`,
   * so streams with different phases stay apart however often they catch up on a backlog or
   * change rate: two messages of one thread due at the same moment would leave one after the
   * other's write, and a loopback write that wakes the server can take 100-300 µs here.
   */
  constructor(
    private readonly perConnectionPerS: number,
    private readonly phase: number,
  ) {}

  setMultiplier(m: number): void {
    this.multiplier = m;
  }

  intervalUs(activeConnections: number): number {
    const rate = this.perConnectionPerS * this.multiplier * activeConnections;
    return rate > 0 ? 1_000_000 / rate : Number.POSITIVE_INFINITY;
  }

  /** The first point of this stream's grid at or after `us`. */
  private gridAtOrAfter(us: number, interval: number): number {
    return (Math.ceil((us - GRID_ORIGIN_US) / interval - this.phase) + this.phase) * interval + GRID_ORIGIN_US;
  }

  /**
   * Where the next message falls with this interval: after a rate change, the first point of
   * the new grid at least half a new interval after the last message (so the gaps average one
   * interval however often the rate moves, and a rise takes effect at once rather than after
   * one old interval).
   */
  private placedDueUs(interval: number): number {
    if (interval === this.gridIntervalUs) return this.nextDueUs;
    return this.gridAtOrAfter(this.prevDueUs + interval / 2, interval);
  }

  /**
   * Calls `fire(dueUs)` for every message due at or before `nowUs` (the whole backlog, if the
   * loop was late) and returns how many fired.
   */
  run(nowUs: number, activeConnections: number, fire: (dueUs: number) => void): number {
    const interval = this.intervalUs(activeConnections);
    if (!Number.isFinite(interval)) {
      this.stop();
      return 0;
    }
    if (Number.isNaN(this.nextDueUs)) {
      this.nextDueUs = this.gridAtOrAfter(nowUs, interval);
      this.prevDueUs = this.nextDueUs - interval;
    } else {
      this.nextDueUs = this.placedDueUs(interval);
    }
    this.gridIntervalUs = interval;
    let fired = 0;
    while (this.nextDueUs <= nowUs) {
      fire(this.nextDueUs);
      fired++;
      this.prevDueUs = this.nextDueUs;
      this.nextDueUs += interval;
    }
    return fired;
  }

  /**
   * When `run` would fire the next message with this many connections: NaN while the stream
   * has no rate or has not run yet (then `run` starts it), so a pacer can wait for it.
   */
  peekDueUs(activeConnections: number): number {
    const interval = this.intervalUs(activeConnections);
    if (!Number.isFinite(interval) || Number.isNaN(this.nextDueUs)) return Number.NaN;
    return this.placedDueUs(interval);
  }

  stop(): void {
    this.nextDueUs = Number.NaN;
    this.prevDueUs = Number.NaN;
    this.gridIntervalUs = Number.NaN;
  }
}

/** A FIFO of due times waiting for a free slot (in-flight window, unanswered ping). */
export class DueQueue {
  private items: number[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(dueUs: number): void {
    this.items.push(dueUs);
  }
  shift(): number | undefined {
    if (this.head >= this.items.length) return undefined;
    const v = this.items[this.head++];
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return v;
  }
  drain(): number[] {
    const rest = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return rest;
  }
}

/** A growable Float64Array log indexed by sequence number. */
export class F64Log {
  data: Float64Array;
  length = 0;
  constructor(initial = 64) {
    this.data = new Float64Array(initial);
  }
  push(v: number): number {
    if (this.length === this.data.length) {
      const grown = new Float64Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    this.data[this.length] = v;
    return this.length++;
  }
  set(i: number, v: number): void {
    if (i < this.length) this.data[i] = v;
  }
  get(i: number): number {
    return i < this.length ? this.data[i]! : Number.NaN;
  }
  toArray(): Float64Array {
    return this.data.slice(0, this.length);
  }
}

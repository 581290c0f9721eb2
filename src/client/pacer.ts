/**
 * Frames out at the pace the server allows, as its `welcome` states it (`limits`): a token
 * bucket like the server's own per-connection limit, kept a margin under it. A burst of the
 * client's own making (its re-joins after a reconnect, its acks of a backlog, the requests
 * queued while it was offline) waits here and goes out as the bucket refills, instead of being
 * refused with E_RATE_LIMITED frame by frame (no `ref`: the client could not tell which) and
 * closed 4029 after a few dozen refusals. Frames leave in the order given.
 */

import { after } from './timers.js';

/** What the server allows each connection: frames a second (0: unlimited) and the burst above it. */
export interface PaceLimits {
  messagesPerSecond: number;
  burst: number;
}

/**
 * The share of the server's rate and burst the client uses: the server counted the frames of
 * the connection before its welcome (the `auth`), and two clocks never tick alike.
 */
const RATE_SHARE = 0.9;
const BURST_SHARE = 0.5;

/**
 * Frames waiting to go first past which an ack is dropped: its messages come again after the
 * server's ack timeout, and are acknowledged then (the dedupe window knows them). A server has
 * at most its window unacknowledged (delivery.max_inflight_per_user, 10,000 by default): that
 * many frames hold its acks whatever its ackIds. Unbounded, a server stating a rate of a frame
 * in months kept an ack for each of its stored messages: 20.8 MB after a million.
 */
const MAX_DROPPABLE_FIRST = 10_000;

/** A frame waiting its turn; `ref`: the request it carries, which may fail (time out) before it goes. */
interface Waiting<T> {
  frame: T;
  ref: string | undefined;
  cancelled: boolean;
}

/** `T`: a frame as it goes out (encoded already: a frame that cannot be encoded fails when sent, not here later). */
export class Pacer<T> {
  private readonly perMs: number;
  private readonly capacity: number;
  private tokens: number;
  private refilledAt: number;
  /** Frames that go before the others (sendFirst), then the others in order. */
  private first: T[] = [];
  private waiting: Array<Waiting<T>> = [];
  private head = 0;
  /** Of `waiting` from `head`, how many are cancelled: past half, they are dropped (compact). */
  private cancelled = 0;
  private readonly byRef = new Map<string, Waiting<T>>();
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    limits: PaceLimits,
    private readonly write: (frame: T) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.perMs = (limits.messagesPerSecond * RATE_SHARE) / 1000;
    this.capacity = Math.max(1, Math.floor(limits.burst * BURST_SHARE));
    // The server's bucket has paid for the `auth` frame already: with a burst of 1 it is empty.
    this.tokens = this.capacity - 1;
    this.refilledAt = now();
  }

  /** The limits a `welcome` states, if they are usable: null for none, an unlimited rate, or nonsense. */
  static limitsOf(welcome: { limits?: unknown }): PaceLimits | null {
    const limits = welcome.limits as Partial<PaceLimits> | undefined;
    if (limits === null || typeof limits !== 'object') return null;
    const { messagesPerSecond: rate, burst } = limits;
    if (typeof rate !== 'number' || typeof burst !== 'number' || !(rate > 0) || !(burst >= 1) || !Number.isFinite(rate) || !Number.isFinite(burst)) return null;
    return { messagesPerSecond: rate, burst };
  }

  /** Frames waiting for their turn (those cancelled included until their turn comes). */
  get backlog(): number {
    return this.first.length + this.waiting.length - this.head;
  }

  /** In order, behind what waits. */
  send(frame: T, ref?: string): void {
    if (this.backlog === 0 && this.take()) return this.write(frame);
    const item: Waiting<T> = { frame, ref, cancelled: false };
    this.waiting.push(item);
    if (ref !== undefined) this.byRef.set(ref, item);
    this.schedule();
  }

  /**
   * Ahead of what waits, at the next token: a token refresh must not wait behind a backlog until
   * it expires. `droppable` (an ack): not kept past MAX_DROPPABLE_FIRST frames first.
   */
  sendFirst(frame: T, droppable = false): void {
    if (this.backlog === 0 && this.take()) return this.write(frame);
    if (droppable && this.first.length >= MAX_DROPPABLE_FIRST) return;
    this.first.push(frame);
    this.schedule();
  }

  /** Sends at once what would go first (a closing client's last acks): nothing after them will be sent. */
  flushFirst(): void {
    for (const frame of this.first.splice(0)) this.write(frame);
  }

  /** The request `ref` failed meanwhile (timed out): its frame, if it still waits, is not sent. */
  cancel(ref: string): void {
    const item = this.byRef.get(ref);
    if (item === undefined) return;
    this.byRef.delete(ref);
    item.cancelled = true;
    // Dropped now, not when their turn comes: under a rate stated tiny (a hostile server's) that is never, and each holds its frame.
    if (++this.cancelled * 2 > this.waiting.length - this.head) this.compact();
  }

  private compact(): void {
    this.waiting = this.waiting.slice(this.head).filter((item) => !item.cancelled);
    this.head = 0;
    this.cancelled = 0;
  }

  /** The connection is gone: what waits is dropped with it (its requests fail as those in flight do). */
  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.first = [];
    this.waiting = [];
    this.head = 0;
    this.cancelled = 0;
    this.byRef.clear();
  }

  private take(): boolean {
    const now = this.now();
    const elapsed = now - this.refilledAt;
    this.refilledAt = now;
    // A clock stepped back refills nothing, as on the server.
    if (elapsed > 0) this.tokens = Math.min(this.capacity, this.tokens + elapsed * this.perMs);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  private flush(): void {
    this.timer = null;
    while (this.backlog > 0) {
      const next = this.first.length === 0 ? this.waiting[this.head]! : null;
      if (next !== null && next.cancelled) {
        this.head++;
        this.cancelled--;
        continue;
      }
      if (!this.take()) break;
      if (next === null) {
        this.write(this.first.shift()!);
        continue;
      }
      this.head++;
      if (next.ref !== undefined) this.byRef.delete(next.ref);
      this.write(next.frame);
    }
    if (this.head === this.waiting.length) {
      this.waiting = [];
      this.head = 0;
      this.cancelled = 0;
    } else if (this.head > 1024) {
      // Taken out of the front in one go now and then, not one shift() per frame.
      this.waiting = this.waiting.slice(this.head);
      this.head = 0;
    }
    if (this.backlog > 0) this.schedule();
  }

  private schedule(): void {
    if (this.timer !== null) return;
    // after(): under a rate stated tiny the wait is longer than a timer takes, which fired each millisecond.
    this.timer = after(Math.max(1, Math.ceil((1 - this.tokens) / this.perMs)), () => this.flush());
  }
}

/**
 * Frames out at the pace the server allows, as its `welcome` states it (`limits`): a token
 * bucket like the server's own per-connection limit, kept a margin under it. A burst of the
 * client's own making (its re-joins after a reconnect, its acks of a backlog, the requests
 * queued while it was offline) waits here and goes out as the bucket refills, instead of being
 * refused with E_RATE_LIMITED frame by frame (no `ref`: the client could not tell which) and
 * closed 4029 after a few dozen refusals. Frames leave in the order given.
 */

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

/** `T`: a frame as it goes out (encoded already: a frame that cannot be encoded fails when sent, not here later). */
export class Pacer<T> {
  private readonly perMs: number;
  private readonly capacity: number;
  private tokens: number;
  private refilledAt: number;
  private waiting: T[] = [];
  private head = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    limits: PaceLimits,
    private readonly write: (frame: T) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.perMs = (limits.messagesPerSecond * RATE_SHARE) / 1000;
    this.capacity = Math.max(1, Math.floor(limits.burst * BURST_SHARE));
    this.tokens = this.capacity;
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

  /** Frames waiting for their turn. */
  get backlog(): number {
    return this.waiting.length - this.head;
  }

  send(frame: T): void {
    if (this.backlog === 0 && this.take()) return this.write(frame);
    this.waiting.push(frame);
    this.schedule();
  }

  /** The connection is gone: what waits is dropped with it (its requests fail as those in flight do). */
  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.waiting = [];
    this.head = 0;
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
    while (this.backlog > 0 && this.take()) this.write(this.waiting[this.head++]!);
    if (this.backlog === 0) {
      this.waiting = [];
      this.head = 0;
    } else {
      // Taken out of the front in one go now and then, not one shift() per frame.
      if (this.head > 1024) {
        this.waiting = this.waiting.slice(this.head);
        this.head = 0;
      }
      this.schedule();
    }
  }

  private schedule(): void {
    if (this.timer !== null) return;
    const ms = Math.max(1, Math.ceil((1 - this.tokens) / this.perMs));
    this.timer = setTimeout(() => this.flush(), ms);
  }
}

/**
 * Whether a user's new connection gets its messages in flight again at once: a window's worth
 * (delivery.max_inflight_per_user) per ack_timeout, per user. A user reconnecting in a loop
 * made the broker read back and encode its whole window at every connection (a review: 10,000
 * small messages never acknowledged, 34 reconnects a second, and every other user's `send`
 * waited 1-3 s for its ack). All or none: past the budget they come at their ack deadlines, as
 * to a connection that lost them, and newer messages wait behind them (a part resent, and
 * newer ones let into the room, had overtaken the rest).
 *
 * Any token bucket per key whose full buckets may be forgotten: answer-budget.ts keeps in one
 * the bytes each connection may still be answered with.
 */

/** Full buckets (the same as none) are dropped every this many calls, or every map's size of them when larger. */
const PRUNE_EVERY = 1000;

interface Bucket {
  tokens: number;
  at: number;
}

export class ResendBudget {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perMs: number;
  private calls = 0;
  private prunedAt = 0;

  constructor(
    private readonly capacity: number,
    private readonly refillMs: number,
  ) {
    this.perMs = capacity / refillMs;
  }

  /** Whether `count` may be resent to `user` at `now` (ms): if so they are spent. */
  take(user: string, count: number, now: number): boolean {
    if (count <= 0) return true;
    const tokens = this.level(user, now);
    if (tokens < count) return false;
    this.set(user, tokens - count, now);
    return true;
  }

  /**
   * Takes all that `user` may have resent at `now`, before a script that lists at most that
   * many (cluster CONNECT): connections opening at once must not each see the whole budget.
   * What the script did not list is given back with `refund`.
   */
  reserve(user: string, now: number): number {
    const level = this.level(user, now);
    const tokens = Math.floor(level);
    this.set(user, level - tokens, now);
    return tokens;
  }

  refund(user: string, count: number, now: number): void {
    if (count > 0) this.set(user, Math.min(this.capacity, this.level(user, now) + count), now);
  }

  /** Spends `count` whatever is left, down to `floor` (below 0: into debt, repaid by the refill): for what was already done. */
  spend(user: string, count: number, now: number, floor = 0): void {
    if (count > 0) this.set(user, Math.max(floor, this.level(user, now) - count), now);
  }

  private level(user: string, now: number): number {
    const bucket = this.buckets.get(user);
    // A clock stepped back refills nothing.
    return bucket === undefined ? this.capacity : Math.min(this.capacity, bucket.tokens + Math.max(0, now - bucket.at) * this.perMs);
  }

  private set(user: string, tokens: number, now: number): void {
    this.buckets.set(user, { tokens, at: now });
    // The full buckets go now and then: at most once per entry's worth of calls, and at least
    // once a refill period (by then a spike's are all full again).
    if (++this.calls >= Math.max(PRUNE_EVERY, this.buckets.size) || now - this.prunedAt >= this.refillMs) this.prune(now);
  }

  private prune(now: number): void {
    this.calls = 0;
    this.prunedAt = now;
    for (const user of this.buckets.keys()) if (this.level(user, now) >= this.capacity) this.buckets.delete(user);
  }
}

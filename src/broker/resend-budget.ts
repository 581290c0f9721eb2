/**
 * How many of a user's messages in flight its new connections get at once: a window's worth
 * (delivery.max_inflight_per_user) per ack_timeout, per user. A user reconnecting in a loop
 * made the broker read back and encode its whole window at every connection (a review: 10,000
 * small messages never acknowledged, 34 reconnects a second, and every other user's `send`
 * waited 1-3 s for its ack). Past the budget they come at their ack deadlines, as they do to a
 * connection that lost them.
 */

/** Users tracked before the full buckets are dropped (a full bucket is the same as none). */
const PRUNE_FROM = 10_000;

interface Bucket {
  tokens: number;
  at: number;
}

export class ResendBudget {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perMs: number;
  private pruneAt = PRUNE_FROM;

  constructor(
    private readonly capacity: number,
    refillMs: number,
  ) {
    this.perMs = capacity / refillMs;
  }

  /** Takes up to `wanted` from `user`'s budget at `now` (ms); returns how many it may resend. */
  take(user: string, wanted: number, now: number): number {
    const granted = Math.min(Math.max(wanted, 0), this.available(user, now));
    this.spend(user, granted, now);
    return granted;
  }

  /** How many `user` may have resent at `now`. */
  available(user: string, now: number): number {
    const bucket = this.buckets.get(user);
    return Math.floor(bucket === undefined ? this.capacity : this.level(bucket, now));
  }

  /** `count` were resent to `user` (at most what was available: asked before a script that lists them). */
  spend(user: string, count: number, now: number): void {
    if (count <= 0) return;
    const bucket = this.buckets.get(user);
    const tokens = bucket === undefined ? this.capacity : this.level(bucket, now);
    this.buckets.set(user, { tokens: Math.max(tokens - count, 0), at: now });
    if (this.buckets.size > this.pruneAt) this.prune(now);
  }

  private level(bucket: Bucket, now: number): number {
    // A clock stepped back refills nothing.
    return Math.min(this.capacity, bucket.tokens + Math.max(0, now - bucket.at) * this.perMs);
  }

  private prune(now: number): void {
    for (const [user, bucket] of this.buckets) if (this.level(bucket, now) >= this.capacity) this.buckets.delete(user);
    // Many users spending at once: look again only once they are twice as many.
    this.pruneAt = Math.max(PRUNE_FROM, 2 * this.buckets.size);
  }
}

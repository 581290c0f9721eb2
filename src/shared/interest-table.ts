/**
 * Which shards have members of which groups, as every thread can read it without asking: a
 * pub is forwarded over the rings only to the shards that may have members of its group
 * (routing by interest), instead of to every shard.
 *
 * Layout: one Int32Array over a SharedArrayBuffer, BUCKETS slots per shard (row `shard` starts
 * at shard * BUCKETS). A group hashes (FNV-1a) to one bucket; a slot counts the memberships
 * (connection, group) held on that shard by groups of that bucket. Each row is written by its
 * shard only (Atomics.add/sub); any thread reads it (Atomics.load). Two groups may share a
 * bucket: a shard then gets a pub it has no member for, which it drops as before (never the
 * other way round: a member is never missed because of a collision).
 *
 * Ordering (the guarantee, tested in test/interest-routing.test.ts): a shard counts a join
 * (Atomics.add, sequentially consistent) before it subscribes the socket and before it sends
 * `joined`. A pub that a shard handles after that add reads the count (Atomics.load) and is
 * forwarded; so every pub handled after the join, and in particular every pub sent by anyone
 * after they saw the member's `joined`, reaches the member. A pub handled before the join may
 * or may not be forwarded, and the receiving shard publishes only to who is subscribed then,
 * as without this table. A leave is counted after the socket is unsubscribed: a pub forwarded
 * meanwhile finds no subscriber, as before.
 *
 * A row belongs to one incarnation of its shard: the primary clears it when the shard's thread
 * exits, and a starting shard clears it again before it accepts a connection.
 */

/** Buckets per shard: 16 KiB of shared memory per shard; with a few hundred groups per shard, collisions stay rare. */
export const INTEREST_BUCKETS = 4096;
const MASK = INTEREST_BUCKETS - 1;

export function createInterestTable(shards: number): SharedArrayBuffer {
  return new SharedArrayBuffer(shards * INTEREST_BUCKETS * Int32Array.BYTES_PER_ELEMENT);
}

/** The bucket of `group` (NAME_PATTERN: ASCII, so charCodeAt is its bytes): FNV-1a, 32 bits. */
export function interestBucket(group: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < group.length; i++) {
    hash ^= group.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) & MASK;
}

export class InterestTable {
  private readonly slots: Int32Array;

  constructor(buffer: SharedArrayBuffer) {
    this.slots = new Int32Array(buffer);
  }

  /** Whether `shard` may have members of a group of `bucket` (false: it certainly has none). */
  has(shard: number, bucket: number): boolean {
    return Atomics.load(this.slots, shard * INTEREST_BUCKETS + bucket) > 0;
  }

  /** A connection of `shard` joined `group` (before its socket is subscribed). */
  joined(shard: number, group: string): void {
    Atomics.add(this.slots, shard * INTEREST_BUCKETS + interestBucket(group), 1);
  }

  /** A connection of `shard` left `group`, or closed while a member (after it is unsubscribed). */
  left(shard: number, group: string): void {
    Atomics.sub(this.slots, shard * INTEREST_BUCKETS + interestBucket(group), 1);
  }

  /** The writing end of `shard`'s row, for that shard's thread. */
  rowOf(shard: number): InterestRow {
    return { joined: (group) => this.joined(shard, group), left: (group) => this.left(shard, group) };
  }

  /** Forgets every membership of `shard`: its thread exited, or a new one starts in its slot. */
  clear(shard: number): void {
    const start = shard * INTEREST_BUCKETS;
    for (let i = start; i < start + INTEREST_BUCKETS; i++) Atomics.store(this.slots, i, 0);
  }
}

/** One shard's own row: what its join, leave and close handlers count. */
export interface InterestRow {
  joined(group: string): void;
  left(group: string): void;
}

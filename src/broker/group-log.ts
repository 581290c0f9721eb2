/**
 * One group's history: its epoch, its top offset and the messages it keeps, oldest first, as
 * their encoded `msg` frames (offset and epoch included: a replay sends them as they are).
 * Offsets are consecutive, so the message at offset `o` is found by arithmetic, not search.
 */
import { Buffer } from 'node:buffer';
import { msgTail } from '../protocol/json-group-frames.js';

/** A kept message: its frame, when it was published (ttl) and its UTF-8 bytes (history.max_bytes). */
export interface LogEntry {
  frame: string;
  ts: number;
  bytes: number;
}

/** Told of each message a log pushes out (size, ttl, max_bytes), after it is gone. */
export type Evicted = (log: GroupLog, offset: number, entry: LogEntry) => void;

/** Removed entries are compacted away once this many lead the array (and make up half of it). */
const COMPACT_AFTER = 1024;

export class GroupLog {
  /** The last offset given out (0: none yet). */
  top: number;
  /** Bytes of the kept frames. */
  bytes = 0;
  private entries: LogEntry[] = [];
  /** Index in `entries` of the oldest kept message. */
  private head = 0;

  /**
   * @param size most messages kept (the group's websocket.history rule)
   * @param ttlMs how long each is kept, 0: no limit
   */
  constructor(
    readonly group: string,
    readonly epoch: string,
    readonly size: number,
    readonly ttlMs: number,
    top = 0,
  ) {
    this.top = top;
  }

  /** Messages kept. */
  get count(): number {
    return this.entries.length - this.head;
  }

  /** The offset of the oldest kept message (top + 1 when none is kept). */
  get first(): number {
    return this.top - this.count + 1;
  }

  /** Gives `head` (a frame without its closing tail) the next offset; returns the entry, and what `size` pushed out. */
  append(head: string, ts: number, evicted: Evicted): { offset: number; entry: LogEntry } {
    const offset = ++this.top;
    const frame = head + msgTail(offset, this.epoch);
    const entry: LogEntry = { frame, ts, bytes: Buffer.byteLength(frame) };
    this.entries.push(entry);
    this.bytes += entry.bytes;
    while (this.count > this.size) this.dropOldest(evicted);
    return { offset, entry };
  }

  /** A message kept from before a restart (load only, in offset order, ending at `top`). */
  restore(frame: string, ts: number): void {
    const entry: LogEntry = { frame, ts, bytes: Buffer.byteLength(frame) };
    this.entries.push(entry);
    this.bytes += entry.bytes;
  }

  /** Drops what is older than the ttl at `now`; returns how many. */
  expire(now: number, evicted: Evicted): number {
    if (this.ttlMs === 0) return 0;
    let dropped = 0;
    const oldest = now - this.ttlMs;
    while (this.count > 0 && this.entries[this.head]!.ts < oldest) {
      this.dropOldest(evicted);
      dropped++;
    }
    return dropped;
  }

  /** Drops the oldest kept message (history.max_bytes); false when none is kept. */
  dropOldest(evicted: Evicted): boolean {
    if (this.count === 0) return false;
    const offset = this.first;
    const entry = this.entries[this.head]!;
    // The slot is released for the collector; the array is compacted now and then.
    this.entries[this.head] = undefined as unknown as LogEntry;
    this.head++;
    this.bytes -= entry.bytes;
    if (this.head >= COMPACT_AFTER && this.head * 2 >= this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
    evicted(this, offset, entry);
    return true;
  }

  /**
   * The frames of the messages after offset `after`, oldest first, up to `limit` of them and
   * `maxBytes` (at least one when any is there); `more`: some were left out. Messages after
   * `after` that are no longer kept are simply not there: the caller compares with `first`.
   */
  range(after: number, limit: number, maxBytes: number): { frames: string[]; bytes: number; more: boolean } {
    const frames: string[] = [];
    let bytes = 0;
    const from = Math.max(after + 1, this.first);
    for (let offset = from; offset <= this.top; offset++) {
      const entry = this.entries[this.head + offset - this.first]!;
      if (frames.length >= limit || (frames.length > 0 && bytes + entry.bytes > maxBytes)) return { frames, bytes, more: true };
      frames.push(entry.frame);
      bytes += entry.bytes;
    }
    return { frames, bytes, more: false };
  }

  /**
   * Whether the messages kept after offset `after` take more than `maxBytes`. Counted from the
   * newest back, and no further than past the bound: a join with an old `since` on a group that
   * keeps 100,000 messages summed them all, and twenty clients asking held the broker for seconds.
   */
  moreBytesAfter(after: number, maxBytes: number): boolean {
    let bytes = 0;
    const first = this.first;
    for (let offset = this.top; offset > after && offset >= first; offset--) {
      bytes += this.entries[this.head + offset - first]!.bytes;
      if (bytes > maxBytes) return true;
    }
    return false;
  }

  /** Every kept entry with its offset, oldest first (persistence re-tags them under a new epoch). */
  *kept(): Generator<{ offset: number; entry: LogEntry }> {
    const first = this.first;
    for (let i = this.head; i < this.entries.length; i++) yield { offset: first + i - this.head, entry: this.entries[i]! };
  }
}

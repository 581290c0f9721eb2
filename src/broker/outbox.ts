/**
 * Deliveries held until the end of the event-loop turn, so that messages ready together for
 * one connection (or one user on one shard) leave as `batch` frames of up to
 * performance.batch_size, priority high to low, then in acceptance order.
 *
 * Each entry's `msg` frame is encoded once per turn however many shards it goes to, and
 * forgotten at the end of the turn: a stored message's data stays on disk between deliveries.
 */
import { encodeBatch } from '../protocol/json-codec.js';
import type { Entry } from './queues.js';
import type { ShardLink } from './shard-link.js';

/** The entry's `msg` frame, or null when its data can no longer be read (it is then not delivered). */
export type EncodeEntry = (entry: Entry) => string | null;

interface Slot {
  shard: number;
  user: string | null;
  sid: string | null;
  entries: Entry[];
}

export class Outbox {
  /** Per shard, per delivery key (`shard|user|` or `shard||sid`): entries ready this turn. */
  private readonly slots = new Map<string, Slot>();
  /** This turn's encoded frames. */
  private readonly frames = new Map<Entry, string | null>();
  private flushQueued = false;

  constructor(
    private readonly link: ShardLink,
    private readonly batchSize: number,
    private readonly encode: EncodeEntry,
  ) {}

  /** Delivers `entry` to every connection of `user` on `shard`, or else to connection `sid`. CRITICAL is never held: it leaves at once. */
  add(shard: number, user: string | null, sid: string | null, entry: Entry): void {
    this.queueFlush();
    if (entry.m.pri === 3) {
      const frame = this.frameOf(entry);
      if (frame !== null) this.deliver(shard, user, sid, frame);
      return;
    }
    const key = `${shard}|${user ?? ''}|${sid ?? ''}`;
    let slot = this.slots.get(key);
    if (!slot) this.slots.set(key, (slot = { shard, user, sid, entries: [] }));
    slot.entries.push(entry);
  }

  private queueFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushQueued = false;
    for (const slot of this.slots.values()) {
      const entries = slot.entries;
      // Priority high to low, then acceptance order.
      if (entries.length > 1) entries.sort((a, b) => b.m.pri - a.m.pri || a.m.seq - b.m.seq);
      const frames: string[] = [];
      for (const entry of entries) {
        const frame = this.frameOf(entry);
        if (frame !== null) frames.push(frame);
      }
      for (let i = 0; i < frames.length; i += this.batchSize) {
        const chunk = frames.slice(i, i + this.batchSize);
        this.deliver(slot.shard, slot.user, slot.sid, chunk.length === 1 ? chunk[0]! : encodeBatch(chunk));
      }
    }
    this.slots.clear();
    this.frames.clear();
  }

  private frameOf(entry: Entry): string | null {
    let frame = this.frames.get(entry);
    if (frame === undefined) this.frames.set(entry, (frame = this.encode(entry)));
    return frame;
  }

  private deliver(shard: number, user: string | null, sid: string | null, frame: string): void {
    if (user !== null) this.link.deliverToUser(shard, user, frame);
    else this.link.deliverToSid(shard, sid!, frame);
  }
}

/**
 * Deliveries held until the end of the event-loop turn, so that messages ready together for
 * one connection (or one user on one shard) leave as `batch` frames of up to
 * performance.batch_size, priority high to low, then in acceptance order.
 */
import { encodeBatch, encodeStoredMsg } from '../protocol/json-codec.js';
import type { Entry } from './queues.js';
import type { ShardLink } from './shard-link.js';

interface Slot {
  shard: number;
  user: string | null;
  sid: string | null;
  entries: Entry[];
}

export class Outbox {
  /** Per shard, per delivery key (`shard|user|` or `shard||sid`): entries ready this turn. */
  private readonly slots = new Map<string, Slot>();
  private flushQueued = false;

  constructor(
    private readonly link: ShardLink,
    private readonly batchSize: number,
  ) {}

  /** Delivers `entry` to every connection of `user` on `shard`, or else to connection `sid`. CRITICAL is never held: it leaves at once. */
  add(shard: number, user: string | null, sid: string | null, entry: Entry): void {
    if (entry.m.pri === 3) return this.deliver(shard, user, sid, frameOf(entry), [entry]);
    const key = `${shard}|${user ?? ''}|${sid ?? ''}`;
    let slot = this.slots.get(key);
    if (!slot) this.slots.set(key, (slot = { shard, user, sid, entries: [] }));
    slot.entries.push(entry);
    if (!this.flushQueued) {
      this.flushQueued = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushQueued = false;
    for (const slot of this.slots.values()) {
      const entries = slot.entries;
      // Priority high to low, then acceptance order.
      if (entries.length > 1) entries.sort((a, b) => b.m.pri - a.m.pri || a.m.seq - b.m.seq);
      for (let i = 0; i < entries.length; i += this.batchSize) {
        const chunk = entries.slice(i, i + this.batchSize);
        const frame = chunk.length === 1 ? frameOf(chunk[0]!) : encodeBatch(chunk.map(frameOf));
        this.deliver(slot.shard, slot.user, slot.sid, frame, chunk);
      }
    }
    this.slots.clear();
  }

  private deliver(shard: number, user: string | null, sid: string | null, frame: string, entries: readonly Entry[]): void {
    // The send latency is measured once per message, on its first way out only.
    let storedAt = 0;
    let live = 0;
    for (const entry of entries) {
      if (entry.readyAt === 0) continue;
      if (live++ === 0 || entry.readyAt < storedAt) storedAt = entry.readyAt;
      entry.readyAt = 0;
    }
    if (user !== null) this.link.deliverToUser(shard, user, frame, storedAt, live);
    else this.link.deliverToSid(shard, sid!, frame, storedAt, live);
  }
}

/** The entry's `msg` frame, encoded once however often it is delivered. */
function frameOf(entry: Entry): string {
  const m = entry.m;
  return (entry.frame ??= encodeStoredMsg(m.id, m.from, m.group, m.data, m.pri, m.ts));
}

/**
 * Deliveries held until the end of the event-loop turn, so that messages ready together for
 * one connection (or one user on one shard) leave as `batch` frames of up to
 * performance.batch_size, priority high to low, then in acceptance order.
 *
 * A batch is also cut by bytes: each frame must fit one ring record (ShardLink.maxFrameBytes).
 * A reconnecting user's backlog of large messages once went out as one batch over half the
 * ring, which the ring could never take, and everything behind it waited forever.
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

/** A `msg` frame's bytes besides its data: id, from and group (names of at most 128 characters), field names, pri, ts. */
const MSG_ENVELOPE_BYTES = 1024;
/** `{"op":"batch","msgs":[` and `]}`: a batch's bytes besides its frames and their commas. */
const BATCH_ENVELOPE = Buffer.byteLength(encodeBatch([]));

export class Outbox {
  /** Per shard, per delivery key (`shard|user|` or `shard||sid`): entries ready this turn. */
  private readonly slots = new Map<string, Slot>();
  private flushQueued = false;

  /**
   * @param tooLarge an entry whose frame alone cannot fit a ring record: it can never be
   *   delivered (the broker refuses such messages on the way in; this is the last guard)
   */
  constructor(
    private readonly link: ShardLink,
    private readonly batchSize: number,
    private readonly tooLarge: (entry: Entry, bytes: number) => void,
  ) {}

  /**
   * Why `data` (JSON text) is too large for its `msg` frame to fit a ring record, or null. A
   * client's frame always fits (ring_bytes is at least 4 x max_payload); a processor's output
   * or the embedding API's data may not: the broker refuses it with E_TOO_LARGE.
   */
  oversize(data: string): string | null {
    const max = this.link.maxFrameBytes - MSG_ENVELOPE_BYTES;
    const bytes = Buffer.byteLength(data);
    return bytes <= max ? null : `data of ${bytes} bytes is over the ${max} one message may carry between threads (performance.ring_bytes)`;
  }

  /** Delivers `entry` to every connection of `user` on `shard`, or else to connection `sid`. CRITICAL is never held: it leaves at once. */
  add(shard: number, user: string | null, sid: string | null, entry: Entry): void {
    if (entry.m.pri === 3) {
      if (this.fits(entry)) this.deliver(shard, user, sid, frameOf(entry));
      return;
    }
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
    const maxBytes = this.link.maxFrameBytes;
    for (const slot of this.slots.values()) {
      const entries = slot.entries;
      // Priority high to low, then acceptance order.
      if (entries.length > 1) entries.sort((a, b) => b.m.pri - a.m.pri || a.m.seq - b.m.seq);
      let chunk: Entry[] = [];
      let bytes = BATCH_ENVELOPE;
      for (const entry of entries) {
        if (!this.fits(entry)) continue;
        const size = frameBytesOf(entry);
        // +1: the comma before it.
        if (chunk.length === this.batchSize || (chunk.length > 0 && bytes + size + 1 > maxBytes)) {
          this.deliverChunk(slot, chunk);
          chunk = [];
          bytes = BATCH_ENVELOPE;
        }
        chunk.push(entry);
        bytes += size + 1;
      }
      if (chunk.length > 0) this.deliverChunk(slot, chunk);
    }
    this.slots.clear();
  }

  private fits(entry: Entry): boolean {
    const bytes = frameBytesOf(entry);
    if (bytes <= this.link.maxFrameBytes) return true;
    this.tooLarge(entry, bytes);
    return false;
  }

  private deliverChunk(slot: Slot, chunk: Entry[]): void {
    const frame = chunk.length === 1 ? frameOf(chunk[0]!) : encodeBatch(chunk.map(frameOf));
    this.deliver(slot.shard, slot.user, slot.sid, frame);
  }

  private deliver(shard: number, user: string | null, sid: string | null, frame: string): void {
    if (user !== null) this.link.deliverToUser(shard, user, frame);
    else this.link.deliverToSid(shard, sid!, frame);
  }
}

/** The entry's `msg` frame, encoded once however often it is delivered. */
function frameOf(entry: Entry): string {
  const m = entry.m;
  return (entry.frame ??= encodeStoredMsg(m.id, m.from, m.group, m.data, m.pri, m.ts));
}

/** Its UTF-8 size, measured once too. */
function frameBytesOf(entry: Entry): number {
  return (entry.frameBytes ||= Buffer.byteLength(frameOf(entry)));
}

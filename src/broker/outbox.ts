/**
 * Deliveries held until the end of the event-loop turn, so that messages ready together for
 * one connection (or one user on one shard) leave as `batch` frames of up to
 * performance.batch_size, priority high to low, then in acceptance order.
 *
 * Each entry's `msg` frame is encoded once per turn however many shards it goes to, and
 * forgotten at the end of the turn: a stored message's data stays on disk between deliveries.
 *
 * A batch is also cut by bytes: each frame must fit one ring record (ShardLink.maxFrameBytes).
 * A reconnecting user's backlog of large messages once went out as one batch over half the
 * ring, which the ring could never take, and everything behind it waited forever.
 */
import { Buffer } from 'node:buffer';
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

/** An encoded `msg` frame and its UTF-8 bytes. */
interface Frame {
  text: string;
  bytes: number;
}

/** A `msg` frame's bytes besides its data: id, from and group (names of at most 128 characters), field names, pri, ts. */
const MSG_ENVELOPE_BYTES = 1024;
/** `{"op":"batch","msgs":[` and `]}`: a batch's bytes besides its frames and their commas. */
const BATCH_ENVELOPE = Buffer.byteLength(encodeBatch([]));

export class Outbox {
  /** Per shard, per delivery key (`shard|user|` or `shard||sid`): entries ready this turn. */
  private readonly slots = new Map<string, Slot>();
  /** This turn's encoded frames (null: not delivered). */
  private readonly frames = new Map<Entry, Frame | null>();
  private flushQueued = false;

  /**
   * @param tooLarge an entry whose data can never fit a ring record (`why` says so): it can
   *   never be delivered (the broker refuses such messages on the way in; this is the last guard)
   */
  constructor(
    private readonly link: ShardLink,
    private readonly batchSize: number,
    private readonly encode: EncodeEntry,
    private readonly tooLarge: (entry: Entry, why: string) => void,
  ) {}

  /**
   * Why `data` (JSON text) is too large for its `msg` frame to fit a ring record, or null. A
   * client's frame always fits (ring_bytes is at least 4 x max_payload); a processor's output
   * or the embedding API's data may not: the broker refuses it with E_TOO_LARGE.
   */
  oversize(data: string): string | null {
    return this.overLimit(Buffer.byteLength(data));
  }

  /** Delivers `entry` to every connection of `user` on `shard`, or else to connection `sid`. CRITICAL is never held: it leaves at once. */
  /**
   * The entries waiting for the next flush to go to every connection of `user` on `shard`: a
   * connection of that user welcomed now gets them from that flush (the shard delivers to a
   * user's welcomed connections), and must not be sent them again by its session id.
   */
  queuedToUser(shard: number, user: string): ReadonlySet<Entry> {
    return new Set(this.slots.get(`${shard}|${user}|`)?.entries);
  }

  add(shard: number, user: string | null, sid: string | null, entry: Entry): void {
    this.queueFlush();
    if (entry.m.pri === 3) {
      const frame = this.frameOf(entry);
      if (frame !== null) this.deliver(shard, user, sid, frame.text, [entry]);
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
    const maxBytes = this.link.maxFrameBytes;
    for (const slot of this.slots.values()) {
      const entries = slot.entries;
      // Priority high to low, then acceptance order.
      if (entries.length > 1) entries.sort((a, b) => b.m.pri - a.m.pri || a.m.seq - b.m.seq);
      let chunk: string[] = [];
      let chunkEntries: Entry[] = [];
      let bytes = BATCH_ENVELOPE;
      for (const entry of entries) {
        const frame = this.frameOf(entry);
        if (frame === null) continue;
        // +1: the comma before it.
        if (chunk.length === this.batchSize || (chunk.length > 0 && bytes + frame.bytes + 1 > maxBytes)) {
          this.deliverChunk(slot, chunk, chunkEntries);
          chunk = [];
          chunkEntries = [];
          bytes = BATCH_ENVELOPE;
        }
        chunk.push(frame.text);
        chunkEntries.push(entry);
        bytes += frame.bytes + 1;
      }
      if (chunk.length > 0) this.deliverChunk(slot, chunk, chunkEntries);
    }
    this.slots.clear();
    this.frames.clear();
  }

  private frameOf(entry: Entry): Frame | null {
    let frame = this.frames.get(entry);
    if (frame === undefined) this.frames.set(entry, (frame = this.encodeFitting(entry)));
    return frame;
  }

  /**
   * The entry's frame, unless its data can never fit a ring record: that is known from the
   * size its metadata keeps, before anything is read back from the store.
   */
  private encodeFitting(entry: Entry): Frame | null {
    const over = this.overLimit(entry.m.bytes);
    if (over !== null) {
      this.tooLarge(entry, over);
      return null;
    }
    const text = this.encode(entry);
    return text === null ? null : { text, bytes: Buffer.byteLength(text) };
  }

  private overLimit(dataBytes: number): string | null {
    const max = this.link.maxFrameBytes - MSG_ENVELOPE_BYTES;
    return dataBytes <= max ? null : `data of ${dataBytes} bytes is over the ${max} one message may carry between threads (performance.ring_bytes)`;
  }

  private deliverChunk(slot: Slot, chunk: string[], entries: readonly Entry[]): void {
    this.deliver(slot.shard, slot.user, slot.sid, chunk.length === 1 ? chunk[0]! : encodeBatch(chunk), entries);
  }

  private deliver(shard: number, user: string | null, sid: string | null, frame: string, entries: readonly Entry[]): void {
    // The send latency is measured once per message, on its first way out only. Each frame
    // (a batch split by bytes included) carries the count and earliest arrival of its own messages.
    let arrivedAt = 0;
    let live = 0;
    for (const entry of entries) {
      if (entry.readyAt === 0) continue;
      if (live++ === 0 || entry.readyAt < arrivedAt) arrivedAt = entry.readyAt;
      entry.readyAt = 0;
    }
    if (user !== null) this.link.deliverToUser(shard, user, frame, arrivedAt, live);
    else this.link.deliverToSid(shard, sid!, frame, arrivedAt, live);
  }
}

/**
 * Carries group messages between shards: one SPSC ring per ordered pair of shards, and a
 * doorbell per shard. A record is [kind u8][topic length u8][topic][frame bytes]; the frame is
 * the wire frame already encoded by the publishing shard, so the receiver publishes the bytes
 * as they are (encode once).
 *
 * A full ring is back-pressure, never a silent drop: the record waits in a per-ring overflow
 * queue (counted as ring_full) and is flushed in order as the consumer frees space. While any
 * overflow queue is over `ring_overflow_bytes`, canAccept() is false and the shard refuses new
 * publishes with E_OVERLOADED, so the publisher knows. Rings to a shard that is down are
 * skipped: its connections are gone, and its replacement discards what was left in its rings.
 */
import { DoorbellListener, DoorbellRinger } from '../rings/doorbell.js';
import { RingReader, RingWriter } from '../rings/ring.js';
import { Counter, type ShardTable } from '../shared/shard-table.js';

export const RecordKind = { PUB: 1 } as const;
const RECORD_HEADER = 2;
/** Records read per drain before letting I/O run. */
const DRAIN_BUDGET = 4096;
const RETRY_MS = 1;

export interface CrossShardOptions {
  self: number;
  table: ShardTable;
  doorbells: SharedArrayBuffer;
  inbound: (SharedArrayBuffer | null)[];
  outbound: (SharedArrayBuffer | null)[];
  overflowLimitBytes: number;
  counters: Float64Array;
  /** Called for every group record received: publish `frame` to local subscribers of `topic`. */
  onPub(topic: Uint8Array, frame: Uint8Array): void;
  /**
   * Another ring bound for this shard (from the broker) that shares its doorbell: one
   * listener per bell, or a notify could wake the wrong waiter. Returns records handled.
   */
  alsoDrain?(budget: number): number;
}

interface Outbound {
  target: number;
  writer: RingWriter;
  overflow: Uint8Array[];
  overflowBytes: number;
}

export class CrossShard {
  private readonly outbound: Outbound[] = [];
  private readonly readers: RingReader[] = [];
  private readonly ringer: DoorbellRinger;
  private readonly listener: DoorbellListener;
  private retryTimer: NodeJS.Timeout | null = null;
  private overloaded = false;

  constructor(private readonly options: CrossShardOptions) {
    options.outbound.forEach((buffer, target) => {
      if (buffer) this.outbound.push({ target, writer: new RingWriter(buffer), overflow: [], overflowBytes: 0 });
    });
    for (const buffer of options.inbound) {
      if (!buffer) continue;
      const reader = new RingReader(buffer);
      // Whatever waits here was meant for connections of this shard's previous incarnation.
      reader.discardAll();
      this.readers.push(reader);
    }
    this.ringer = new DoorbellRinger(options.doorbells);
    this.listener = new DoorbellListener(options.doorbells, options.self, () => this.drain());
  }

  start(): void {
    this.listener.start();
  }

  stop(): void {
    this.listener.stop();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  /** False while a ring's overflow is over its limit: refuse new publishes. */
  canAccept(): boolean {
    return !this.overloaded;
  }

  /** Sends a group frame to every other shard that is up. `topic` is ASCII (NAME_PATTERN). */
  forwardPub(topic: string, frame: Uint8Array): void {
    const length = RECORD_HEADER + topic.length + frame.byteLength;
    const { table, counters } = this.options;
    for (const out of this.outbound) {
      if (!table.isUp(out.target)) {
        if (out.overflowBytes > 0) this.dropOverflow(out);
        continue;
      }
      if (out.overflow.length === 0) {
        const at = out.writer.reserve(length);
        if (at >= 0) {
          const bytes = out.writer.bytes;
          bytes[at] = RecordKind.PUB;
          bytes[at + 1] = topic.length;
          for (let i = 0; i < topic.length; i++) bytes[at + RECORD_HEADER + i] = topic.charCodeAt(i);
          bytes.set(frame, at + RECORD_HEADER + topic.length);
          out.writer.publish();
          this.ringer.ring(out.target);
          counters[Counter.ring_forwarded]!++;
          continue;
        }
      }
      // Full (or already queueing, to keep order): hold a copy until the consumer catches up.
      const record = new Uint8Array(length);
      record[0] = RecordKind.PUB;
      record[1] = topic.length;
      for (let i = 0; i < topic.length; i++) record[RECORD_HEADER + i] = topic.charCodeAt(i);
      record.set(frame, RECORD_HEADER + topic.length);
      out.overflow.push(record);
      out.overflowBytes += length;
      counters[Counter.ring_full]!++;
      if (out.overflowBytes > this.options.overflowLimitBytes) this.overloaded = true;
      this.scheduleRetry();
    }
  }

  private scheduleRetry(): void {
    if (this.retryTimer === null) this.retryTimer = setTimeout(() => this.flushOverflow(), RETRY_MS);
  }

  private flushOverflow(): void {
    this.retryTimer = null;
    let waiting = false;
    let overloaded = false;
    for (const out of this.outbound) {
      if (out.overflow.length === 0) continue;
      if (!this.options.table.isUp(out.target)) {
        this.dropOverflow(out);
        continue;
      }
      let sent = 0;
      while (sent < out.overflow.length && out.writer.tryWrite(out.overflow[sent]!)) {
        out.overflowBytes -= out.overflow[sent]!.byteLength;
        sent++;
      }
      if (sent > 0) {
        out.overflow.splice(0, sent);
        this.ringer.ring(out.target);
        this.options.counters[Counter.ring_forwarded]! += sent;
      }
      if (out.overflow.length > 0) waiting = true;
      if (out.overflowBytes > this.options.overflowLimitBytes) overloaded = true;
    }
    this.overloaded = overloaded;
    if (waiting) this.scheduleRetry();
  }

  /** A shard went down: what waited for it had no recipients left. */
  private dropOverflow(out: Outbound): void {
    out.overflow = [];
    out.overflowBytes = 0;
  }

  /** Reads every inbound ring; true when the budget ran out with records left. */
  private drain(): boolean {
    let budget = DRAIN_BUDGET;
    const { onPub, counters, alsoDrain } = this.options;
    if (alsoDrain) {
      budget -= alsoDrain(budget);
      if (budget <= 0) return true;
    }
    for (const reader of this.readers) {
      while (budget > 0 && reader.next()) {
        budget--;
        const at = reader.offset;
        const bytes = reader.bytes;
        if (bytes[at] === RecordKind.PUB) {
          const topicEnd = at + RECORD_HEADER + bytes[at + 1]!;
          onPub(bytes.subarray(at + RECORD_HEADER, topicEnd), bytes.subarray(topicEnd, at + reader.length));
          counters[Counter.ring_received]!++;
        }
      }
      reader.release();
      if (budget === 0) return true;
    }
    return false;
  }
}

/**
 * Carries group messages between shards: one SPSC ring per ordered pair of shards, and a
 * doorbell per shard. A record is [kind u8][topic length u8][received f64][topic][frame bytes];
 * the frame is the wire frame already encoded by the publishing shard, so the receiver
 * publishes the bytes as they are (encode once). `received` is when the publishing shard got
 * the pub frame (epochMs(), valid in every thread), so each shard measures the pub latency.
 *
 * A full ring is back-pressure, never a silent drop: the record waits in a per-ring overflow
 * queue (counted as ring_full) and is flushed in order as the consumer frees space. While the
 * fullest overflow queue is over `ring_overflow_bytes`, the shard refuses new publishes with
 * E_OVERLOADED past each publisher's allowance (backpressure.ts), so the publisher knows.
 * Rings to a shard that is down are skipped: its connections are gone, and its replacement
 * discards what was left in its rings. So are rings to shards with no member of the pub's group (routing by interest,
 * src/shared/interest-table.ts).
 */
import { DoorbellListener, DoorbellRinger } from '../rings/doorbell.js';
import { QueuedRingWriter } from '../link/queued-writer.js';
import { RingReader } from '../rings/ring.js';
import { interestBucket, type InterestTable } from '../shared/interest-table.js';
import { type ShardTable } from '../shared/shard-table.js';
import { Counter } from '../shared/shard-counters.js';
import type { Logger } from '../util/logger.js';

export const RecordKind = { PUB: 1 } as const;
const RECEIVED_AT = 2;
const RECORD_HEADER = 10;
/** Records read per drain before letting I/O run. */
const DRAIN_BUDGET = 4096;

export interface CrossShardOptions {
  self: number;
  table: ShardTable;
  /** Which shards have members of which groups: a pub goes only to those (interest-table.ts). */
  interest: InterestTable;
  doorbells: SharedArrayBuffer;
  inbound: (SharedArrayBuffer | null)[];
  outbound: (SharedArrayBuffer | null)[];
  counters: Float64Array;
  /** Where a refused record is reported (once per ring and reason). */
  log?: Pick<Logger, 'error'>;
  /** A record found a ring full and waits in its overflow. */
  overflowed?(): void;
  /** Called for every group record received: publish `frame` to local subscribers of `topic`. */
  onPub(topic: Uint8Array, frame: Uint8Array, receivedAt: number): void;
  /**
   * Another ring bound for this shard (from the broker) that shares its doorbell: one
   * listener per bell, or a notify could wake the wrong waiter. Returns records handled.
   */
  alsoDrain?(budget: number): number;
}

export class CrossShard {
  private readonly outbound: QueuedRingWriter[] = [];
  /** Per outbound writer: the incarnation (restart count) of its target its waiting records are for. */
  private readonly queuedFor: number[] = [];
  /** outbound[i].bytes and readers[i].bytes as DataViews, for the f64 field. */
  private readonly outViews: DataView[] = [];
  private readonly readers: RingReader[] = [];
  private readonly readerViews: DataView[] = [];
  private readonly listener: DoorbellListener;

  constructor(private readonly options: CrossShardOptions) {
    const ringer = new DoorbellRinger(options.doorbells);
    const { counters } = options;
    options.outbound.forEach((buffer, target) => {
      if (!buffer) return;
      const index = this.outbound.length;
      this.queuedFor.push(0);
      this.outbound.push(
        new QueuedRingWriter(buffer, ringer, target, {
          onQueued: () => {
            counters[Counter.ring_full]!++;
            options.overflowed?.();
          },
          onFlushed: (records) => (counters[Counter.ring_forwarded]! += records),
          stillWanted: () => this.wanted(index),
          // Only a pub whose frame is over half the ring (config keeps ring_bytes at 4 x max_payload at least).
          onRefused: (code, bytes, first) => {
            counters[Counter.ring_refused]!++;
            if (first) options.log?.error({ code, target, bytes }, 'record to another shard refused by its ring');
          },
        }),
      );
      this.outViews.push(viewOf(this.outbound[this.outbound.length - 1]!.bytes));
    });
    for (const buffer of options.inbound) {
      if (!buffer) continue;
      const reader = new RingReader(buffer);
      // Whatever waits here was meant for connections of this shard's previous incarnation.
      reader.discardAll();
      this.readers.push(reader);
      this.readerViews.push(viewOf(reader.bytes));
    }
    this.listener = new DoorbellListener(options.doorbells, options.self, () => this.drain());
  }

  start(): void {
    this.listener.start();
  }

  stop(): void {
    this.listener.stop();
    for (const out of this.outbound) out.stop();
  }

  /** Bytes waiting in the overflow of every outbound ring. */
  get backlog(): number {
    let bytes = 0;
    for (const out of this.outbound) bytes += out.backlog;
    return bytes;
  }

  /** When the oldest record waiting in any outbound overflow was queued; 0 when none waits. */
  get oldestQueuedAt(): number {
    let oldest = 0;
    for (const out of this.outbound) if (out.oldestQueuedAt > 0 && (oldest === 0 || out.oldestQueuedAt < oldest)) oldest = out.oldestQueuedAt;
    return oldest;
  }

  /** The fullest overflow of a ring to a shard that is up: what back-pressure on publishes watches (backpressure.ts). */
  fullestBacklog(): number {
    // Not outbound[-1]?.backlog: a negative index is a named property, looked up in V8's
    // runtime on every pub while no overflow waits (0.3% of a two-shard server's CPU).
    const i = this.fullestRing();
    return i < 0 ? 0 : this.outbound[i]!.backlog;
  }

  /** How many times that ring's overflow emptied (another ring becoming the fullest counts as a change too). */
  fullestEmptied(): number {
    const i = this.fullestRing();
    return i < 0 ? 0 : this.outbound[i]!.emptied * this.outbound.length + i;
  }

  private fullestRing(): number {
    let fullest = -1;
    let bytes = 0;
    for (let i = 0; i < this.outbound.length; i++) {
      const out = this.outbound[i]!;
      if (out.backlog > bytes && this.wanted(i)) {
        fullest = i;
        bytes = out.backlog;
      }
    }
    return fullest;
  }

  /**
   * Whether what waits in outbound[i]'s overflow is still for a live consumer: its target is up,
   * in the incarnation it was queued for. Otherwise drops it: a restarted shard discards its
   * rings once, at its start, and a flush after that would hand the new one's members messages
   * published before they joined (and before the crash); nor may a dead shard's overflow refuse
   * every pub of this one (canAccept).
   */
  private wanted(i: number): boolean {
    const out = this.outbound[i]!;
    const { table } = this.options;
    if (out.backlog === 0) return true;
    if (table.isUp(out.target) && table.restarts(out.target) === this.queuedFor[i]) return true;
    out.discard();
    return false;
  }

  /**
   * Sends a group frame to every other shard that is up and may have members of the group
   * (interest-table.ts says why none is missed). `topic` is ASCII (NAME_PATTERN). `payload`
   * is asked for once, and only when some shard is sent the record: a shard alone, or one
   * whose peers have no members of the group, encodes nothing for them. It is given the most
   * bytes a record's payload may have (every ring is the same size).
   */
  forwardPub(topic: string, payload: (maxBytes: number) => Uint8Array, receivedAt: number): void {
    let frame: Uint8Array | null = null;
    let length = 0;
    const { table, counters, interest } = this.options;
    const bucket = interestBucket(topic);
    for (let i = 0; i < this.outbound.length; i++) {
      const out = this.outbound[i]!;
      // What waits for a shard that is down, or for the one a restart replaced, has no recipients
      // left: dropped, so that this record is not queued behind it (and dropped with it).
      this.wanted(i);
      if (!table.isUp(out.target)) continue;
      if (!interest.has(out.target, bucket)) continue;
      if (frame === null) {
        frame = payload(out.maxRecord - RECORD_HEADER - topic.length);
        length = RECORD_HEADER + topic.length + frame.byteLength;
      }
      const at = out.reserve(length);
      if (at >= 0) {
        writePubRecord(out.bytes, this.outViews[i]!, at, topic, frame, receivedAt);
        out.publish();
        counters[Counter.ring_forwarded]!++;
      } else {
        // Full, or records already wait: hold a copy, in order, until the consumer catches up
        // (or, should it never fit, the writer refuses and counts it).
        const record = new Uint8Array(length);
        writePubRecord(record, viewOf(record), 0, topic, frame, receivedAt);
        if (out.backlog === 0) this.queuedFor[i] = table.restarts(out.target);
        out.enqueue(record);
      }
    }
  }

  /** Reads every inbound ring; true when the budget ran out with records left. */
  private drain(): boolean {
    let budget = DRAIN_BUDGET;
    const { onPub, counters, alsoDrain } = this.options;
    if (alsoDrain) {
      budget -= alsoDrain(budget);
      if (budget <= 0) return true;
    }
    for (let i = 0; i < this.readers.length; i++) {
      const reader = this.readers[i]!;
      while (budget > 0 && reader.next()) {
        budget--;
        const at = reader.offset;
        const bytes = reader.bytes;
        if (bytes[at] === RecordKind.PUB) {
          const topicEnd = at + RECORD_HEADER + bytes[at + 1]!;
          const receivedAt = this.readerViews[i]!.getFloat64(at + RECEIVED_AT, true);
          onPub(bytes.subarray(at + RECORD_HEADER, topicEnd), bytes.subarray(topicEnd, at + reader.length), receivedAt);
          counters[Counter.ring_received]!++;
        }
      }
      reader.release();
      if (budget === 0) return true;
    }
    return false;
  }
}

function writePubRecord(bytes: Uint8Array, view: DataView, at: number, topic: string, frame: Uint8Array, receivedAt: number): void {
  bytes[at] = RecordKind.PUB;
  bytes[at + 1] = topic.length;
  view.setFloat64(at + RECEIVED_AT, receivedAt, true);
  for (let i = 0; i < topic.length; i++) bytes[at + RECORD_HEADER + i] = topic.charCodeAt(i);
  bytes.set(frame, at + RECORD_HEADER + topic.length);
}

function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

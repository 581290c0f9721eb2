/**
 * The broker's ShardLink over shared memory: one SPSC ring each way per shard, and the
 * broker's doorbell (slot `shards`) that the shards ring after writing.
 */
import { DoorbellListener, DoorbellRinger } from '../rings/doorbell.js';
import { httpError, type ErrorCode } from '../protocol/errors.js';
import { QueuedRingWriter, type WriteRefusal } from '../link/queued-writer.js';
import { LinkReader } from '../link/reader.js';
import { encodeRecord, FRAME_RECORD_OVERHEAD, ToShard } from '../link/records.js';
import type { Logger } from '../util/logger.js';
import type { RecordSink, ShardLink } from './shard-link.js';

/** Records read per wake-up before yielding to I/O, so a flood from the shards cannot starve timers. */
const DRAIN_BUDGET = 4096;

export interface RingLinkOptions {
  shards: number;
  doorbells: SharedArrayBuffer;
  /** fromShard[i]: ring shard i -> broker; toShard[i]: broker -> shard i. */
  fromShard: SharedArrayBuffer[];
  toShard: SharedArrayBuffer[];
  /** Where a refused record is reported (once per ring and reason). */
  log?: Logger;
}

/** What the link could not hand to a shard, by reason (sampled into /stats with the broker's counters). */
export interface LinkStats {
  /** Records refused because no ring could ever carry them. */
  link_too_large: number;
}

export class RingShardLink implements ShardLink {
  private readonly readers: LinkReader[];
  private readonly writers: QueuedRingWriter[];
  private readonly listener: DoorbellListener;
  // The primary starts the broker (listen) before any shard, so nothing is read before it is set.
  private sink: RecordSink = () => {};
  readonly maxFrameBytes: number;
  readonly stats: LinkStats = { link_too_large: 0 };

  constructor(options: RingLinkOptions) {
    const ringer = new DoorbellRinger(options.doorbells);
    const refused = (shard: number) => (code: WriteRefusal, bytes: number, first: boolean) => {
      if (code === 'E_TOO_LARGE') this.stats.link_too_large++;
      if (first) options.log?.error({ code, shard, bytes }, 'record to a shard refused by its ring');
    };
    this.writers = options.toShard.map((buffer, shard) => new QueuedRingWriter(buffer, ringer, shard, { onRefused: refused(shard) }));
    this.maxFrameBytes = Math.min(...this.writers.map((writer) => writer.maxRecord)) - FRAME_RECORD_OVERHEAD;
    this.readers = options.fromShard.map((buffer, shard) => new LinkReader(buffer, (kind, fields) => this.sink(shard, kind, fields), false));
    this.listener = new DoorbellListener(options.doorbells, options.shards, () => this.drain());
  }

  deliverToUser(shard: number, user: string, frame: string): void {
    this.writers[shard]!.write(encodeRecord(ToShard.DELIVER_USER, [user, frame]));
  }

  deliverToSid(shard: number, sid: string, frame: string): void {
    this.writers[shard]!.write(encodeRecord(ToShard.DELIVER_SID, [sid, frame]));
  }

  senderAck(shard: number, sid: string, ref: string | null, id: string): void {
    this.writers[shard]!.write(encodeRecord(ToShard.SENDER_ACK, [sid, ref, id]));
  }

  error(shard: number, sid: string, code: ErrorCode, message: string, ref: string | null): void {
    this.writers[shard]!.write(encodeRecord(ToShard.ERROR, [sid, code, message, ref]));
  }

  welcome(shard: number, sid: string, pending: number): void {
    this.writers[shard]!.write(encodeRecord(ToShard.WELCOME, [sid, pending]));
  }

  groupPub(group: string, frame: string): void {
    // Encoded once; QueuedRingWriter keeps the array only while it waits, and never changes it.
    const record = encodeRecord(ToShard.GROUP_PUB, [group, frame]);
    for (const writer of this.writers) writer.write(record);
  }

  adminReply(shard: number, requestId: number, status: number, bodyJson: string): void {
    const writer = this.writers[shard]!;
    if (writer.write(encodeRecord(ToShard.ADMIN_REPLY, [requestId, status, bodyJson])) !== 'E_TOO_LARGE') return;
    // Answered all the same, or the request would wait forever.
    const { status: failed, body } = httpError('internal_error', `the answer (${bodyJson.length} characters) is too large for the shard link`);
    writer.write(encodeRecord(ToShard.ADMIN_REPLY, [requestId, failed, JSON.stringify(body)]));
  }

  listen(onRecord: RecordSink): void {
    this.sink = onRecord;
    this.listener.start();
  }

  shardDown(shard: number): void {
    this.readers[shard]!.drain(Number.MAX_SAFE_INTEGER);
    this.writers[shard]!.discard();
  }

  stop(): void {
    this.listener.stop();
    for (const writer of this.writers) writer.stop();
  }

  private drain(): boolean {
    let budget = DRAIN_BUDGET;
    for (const reader of this.readers) {
      budget -= reader.drain(budget);
      if (budget <= 0) return true;
    }
    return false;
  }
}

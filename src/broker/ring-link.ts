/**
 * The broker's ShardLink over shared memory: one SPSC ring each way per shard, and the
 * broker's doorbell (slot `shards`) that the shards ring after writing.
 */
import { DoorbellListener, DoorbellRinger } from '../rings/doorbell.js';
import type { ErrorCode } from '../protocol/errors.js';
import { QueuedRingWriter } from '../link/queued-writer.js';
import { LinkReader } from '../link/reader.js';
import { encodeRecord, ToBroker, ToShard } from '../link/records.js';
import type { RecordSink, ShardLink } from './shard-link.js';

/** Records read per wake-up before yielding to I/O, so a flood from the shards cannot starve timers. */
const DRAIN_BUDGET = 4096;

export interface RingLinkOptions {
  shards: number;
  doorbells: SharedArrayBuffer;
  /** fromShard[i]: ring shard i -> broker; toShard[i]: broker -> shard i. */
  fromShard: SharedArrayBuffer[];
  toShard: SharedArrayBuffer[];
  /** METRICS records go here rather than to the broker (whose business they are not). */
  onMetrics?(shard: number, fields: unknown[]): void;
}

export class RingShardLink implements ShardLink {
  private readonly readers: LinkReader[];
  private readonly writers: QueuedRingWriter[];
  private readonly listener: DoorbellListener;
  // The primary starts the broker (listen) before any shard, so nothing is read before it is set.
  private sink: RecordSink = () => {};

  constructor(options: RingLinkOptions) {
    const ringer = new DoorbellRinger(options.doorbells);
    this.writers = options.toShard.map((buffer, shard) => new QueuedRingWriter(buffer, ringer, shard));
    const onMetrics = options.onMetrics ?? (() => {});
    this.readers = options.fromShard.map(
      (buffer, shard) => new LinkReader(buffer, (kind, fields) => (kind === ToBroker.METRICS ? onMetrics(shard, fields) : this.sink(shard, kind, fields)), false),
    );
    this.listener = new DoorbellListener(options.doorbells, options.shards, () => this.drain());
  }

  deliverToUser(shard: number, user: string, frame: string, storedAt = 0, live = 0): void {
    this.writers[shard]!.write(encodeRecord(ToShard.DELIVER_USER, live > 0 ? [user, frame, storedAt, live] : [user, frame]));
  }

  deliverToSid(shard: number, sid: string, frame: string, storedAt = 0, live = 0): void {
    this.writers[shard]!.write(encodeRecord(ToShard.DELIVER_SID, live > 0 ? [sid, frame, storedAt, live] : [sid, frame]));
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
    this.writers[shard]!.write(encodeRecord(ToShard.ADMIN_REPLY, [requestId, status, bodyJson]));
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

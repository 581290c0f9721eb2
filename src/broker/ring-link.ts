/**
 * The broker's ShardLink over shared memory: one SPSC ring each way per shard, and the
 * broker's doorbell (slot `shards`) that the shards ring after writing.
 *
 * What waits for a shard is bounded. A shard that is not up (down, crash-looping, stopping)
 * gets nothing: its connections are gone, and its successor discards what its ring holds.
 * While a ring's overflow is over `maxBacklogBytes`, deliveries are not written (they stay
 * stored, in flight, and their ack timers deliver them again) and group messages are dropped
 * (at most once); acks, errors, welcomes and admin answers, small and not redelivered by
 * anyone, may use twice that before they are dropped too. Each is counted.
 */
import { DoorbellListener, DoorbellRinger } from '../rings/doorbell.js';
import { httpError, type ErrorCode } from '../protocol/errors.js';
import { QueuedRingWriter, type WriteRefusal } from '../link/queued-writer.js';
import { LinkReader } from '../link/reader.js';
import { encodeRecord, FRAME_RECORD_OVERHEAD, groupOfTopic, ToBroker, ToShard } from '../link/records.js';
import type { Logger } from '../util/logger.js';
import { interestBucket, type InterestTable } from '../shared/interest-table.js';
import type { RecordSink, ShardLink } from './shard-link.js';

/** The REPORT record has no fields: encoded once (a writer never changes what it keeps). */
const REPORT_REQUEST = encodeRecord(ToShard.REPORT, []);

/** Records read per wake-up before yielding to I/O, so a flood from the shards cannot starve timers. */
const DRAIN_BUDGET = 4096;

export interface RingLinkOptions {
  shards: number;
  doorbells: SharedArrayBuffer;
  /** fromShard[i]: ring shard i -> broker; toShard[i]: broker -> shard i. */
  fromShard: SharedArrayBuffer[];
  toShard: SharedArrayBuffer[];
  /** METRICS and METRICS_WANTED records go here rather than to the broker (whose business they are not). */
  metrics?: { report(shard: number, fields: unknown[]): void; wanted(): void };
  /** Whether shard i can take records now (starting or up); default: always. */
  accepts?(shard: number): boolean;
  /** Bytes each ring's overflow may hold for deliveries and group messages (performance.ring_overflow_bytes); default: no bound. */
  maxBacklogBytes?: number;
  /** Where a refused record is reported (once per ring and reason). */
  log?: Pick<Logger, 'error'>;
  /** Which shards have members of which groups: a group message goes only to those (src/shared/interest-table.ts). */
  interest?: InterestTable;
}

/** What the link did not hand to a shard, by reason (sampled into /stats with the broker's counters). */
export interface LinkStats {
  /** Records refused because no ring could ever carry them. */
  link_too_large: number;
  /** Deliveries not written while a ring's overflow was over its bound: their ack timers deliver them again. */
  link_deferred: number;
  /** Group messages, and past twice the bound other records, dropped while a ring's overflow was over its bound. */
  link_dropped: number;
  /** Records not written because their shard was not up. */
  link_discarded: number;
}

export class RingShardLink implements ShardLink {
  private readonly readers: LinkReader[];
  private readonly writers: QueuedRingWriter[];
  private readonly listener: DoorbellListener;
  private readonly accepts: (shard: number) => boolean;
  private readonly interest: InterestTable | undefined;
  /** Acks, errors, welcomes and admin answers may use this much overflow. */
  private readonly controlBacklog: number;
  // The primary starts the broker (listen) before any shard, so nothing is read before it is set.
  private sink: RecordSink = () => {};
  readonly maxFrameBytes: number;
  readonly stats: LinkStats = { link_too_large: 0, link_deferred: 0, link_dropped: 0, link_discarded: 0 };

  constructor(options: RingLinkOptions) {
    const ringer = new DoorbellRinger(options.doorbells);
    const maxBacklog = options.maxBacklogBytes ?? Infinity;
    const refused = (shard: number) => (code: WriteRefusal, bytes: number, first: boolean) => {
      if (code === 'E_TOO_LARGE') this.stats.link_too_large++;
      if (first) options.log?.error({ code, shard, bytes }, 'record to a shard refused by its ring');
    };
    this.writers = options.toShard.map((buffer, shard) => new QueuedRingWriter(buffer, ringer, shard, { onRefused: refused(shard) }, maxBacklog));
    this.accepts = options.accepts ?? (() => true);
    this.interest = options.interest;
    this.controlBacklog = 2 * maxBacklog;
    this.maxFrameBytes = Math.min(...this.writers.map((writer) => writer.maxRecord)) - FRAME_RECORD_OVERHEAD;
    const metrics = options.metrics ?? { report: () => {}, wanted: () => {} };
    this.readers = options.fromShard.map(
      (buffer, shard) =>
        new LinkReader(
          buffer,
          (kind, fields) => (kind === ToBroker.METRICS ? metrics.report(shard, fields) : kind === ToBroker.METRICS_WANTED ? metrics.wanted() : this.sink(shard, kind, fields)),
          false,
        ),
    );
    this.listener = new DoorbellListener(options.doorbells, options.shards, () => this.drain());
  }

  deliverToUser(shard: number, user: string, frame: string, arrivedAt = 0, live = 0): void {
    this.deliver(shard, encodeRecord(ToShard.DELIVER_USER, live > 0 ? [user, frame, arrivedAt, live] : [user, frame]));
  }

  deliverToSid(shard: number, sid: string, frame: string, arrivedAt = 0, live = 0): void {
    this.deliver(shard, encodeRecord(ToShard.DELIVER_SID, live > 0 ? [sid, frame, arrivedAt, live] : [sid, frame]));
  }

  /**
   * Whatever the overflow, as a welcome: a sender whose ack was dropped (behind the errors
   * answering another connection's flood of acks) cannot know its message was stored, and sends
   * it again. There is one per SEND or ANY record the shard wrote, within its bounded backlog.
   */
  senderAck(shard: number, sid: string, ref: string | null, id: string, offset?: number): void {
    this.writeCounted(shard, encodeRecord(ToShard.SENDER_ACK, offset === undefined ? [sid, ref, id] : [sid, ref, id, offset]), Infinity);
  }

  error(shard: number, sid: string, code: ErrorCode, message: string, ref: string | null, close = false, id?: string): void {
    const record = id !== undefined ? [sid, code, message, ref, close ? 1 : 0, id] : close ? [sid, code, message, ref, 1] : [sid, code, message, ref];
    // An error that closes its connection goes whatever the overflow, as a welcome does.
    if (close) this.writeCounted(shard, encodeRecord(ToShard.ERROR, record), Infinity);
    else this.control(shard, encodeRecord(ToShard.ERROR, record));
  }

  /**
   * Whatever the overflow: a connection whose welcome was dropped (behind the errors answering
   * another connection's flood of acks) waited unwelcomed for good. There is one per PRESENCE
   * record the shard wrote, so they cannot outgrow the shard's own bounded backlog.
   */
  welcome(shard: number, sid: string, pending: number): void {
    this.writeCounted(shard, encodeRecord(ToShard.WELCOME, [sid, pending]), Infinity);
  }

  groupPub(topic: string, frame: string, receivedAt = 0): void {
    // Encoded once; QueuedRingWriter keeps the array only while it waits, and never changes it.
    const record = encodeRecord(ToShard.GROUP_PUB, receivedAt > 0 ? [topic, frame, receivedAt] : [topic, frame]);
    const interest = this.interest;
    // Presence events go where the group has members too: watchers are members.
    const bucket = interest ? interestBucket(groupOfTopic(topic)) : 0;
    for (let shard = 0; shard < this.writers.length; shard++) {
      if (interest && !interest.has(shard, bucket)) continue;
      if (this.write(shard, record, this.writers[shard]!.maxBacklog) === 'E_OVERLOADED') this.stats.link_dropped++;
    }
  }

  reply(shard: number, sid: string, frame: string): void {
    this.control(shard, encodeRecord(ToShard.REPLY, [sid, frame]));
  }

  requestReport(shard: number): void {
    if (!this.accepts(shard)) return;
    // Into the ring or not at all: a request that would wait is one interval's report fewer.
    const writer = this.writers[shard]!;
    const at = writer.reserve(REPORT_REQUEST.byteLength);
    if (at < 0) return;
    writer.bytes.set(REPORT_REQUEST, at);
    writer.publish();
  }

  groupJoined(shard: number, sid: string, group: string, ref: string | null, replay: readonly string[], top: number, epoch: string, recovered: number): void {
    const writer = this.writers[shard]!;
    // A replay only goes whole: behind a backed-up ring part of it could be dropped, a gap nobody would see.
    if (replay.length > 0 && writer.backlog > writer.maxBacklog) {
      this.stats.link_dropped++;
      replay = [];
      recovered = 0;
    }
    // Checked once above: the replay (at most history.max_replay_bytes) and its JOINED go whole, whatever overflow they take.
    const limit = replay.length > 0 ? Infinity : this.controlBacklog;
    for (const frame of replay) this.writeCounted(shard, encodeRecord(ToShard.REPLY, [sid, frame]), limit);
    this.writeCounted(shard, encodeRecord(ToShard.JOINED, [sid, group, ref, top, epoch, recovered, null]), limit);
  }

  groupJoinFailed(shard: number, sid: string, group: string, ref: string | null, message: string, code: ErrorCode = 'E_BAD_FRAME'): void {
    this.control(shard, encodeRecord(ToShard.JOINED, [sid, group, ref, 0, '', -1, message, code]));
  }

  groupLeft(shard: number, sid: string, group: string, ref: string | null): void {
    this.control(shard, encodeRecord(ToShard.LEFT, [sid, group, ref]));
  }

  adminReply(shard: number, requestId: number, status: number, bodyJson: string): void {
    if (this.control(shard, encodeRecord(ToShard.ADMIN_REPLY, [requestId, status, bodyJson])) !== 'E_TOO_LARGE') return;
    // Answered all the same, or the request would wait forever.
    const { status: failed, body } = httpError('internal_error', `the answer (${bodyJson.length} characters) is too large for the shard link`);
    this.control(shard, encodeRecord(ToShard.ADMIN_REPLY, [requestId, failed, JSON.stringify(body)]));
  }

  /** The overflow toward `shard`: bytes, and when its oldest record was queued (0: none waits). */
  overflowOf(shard: number): { bytes: number; since: number } {
    const writer = this.writers[shard]!;
    return { bytes: writer.backlog, since: writer.oldestQueuedAt };
  }

  listen(onRecord: RecordSink): void {
    this.sink = onRecord;
    this.listener.start();
  }

  catchUp(): void {
    for (const reader of this.readers) reader.catchUp();
  }

  shardDown(shard: number): void {
    this.readers[shard]!.drain(Number.MAX_SAFE_INTEGER);
    this.writers[shard]!.discard();
  }

  stop(): void {
    this.listener.stop();
    for (const writer of this.writers) writer.stop();
  }

  private deliver(shard: number, record: Uint8Array): void {
    if (this.write(shard, record, this.writers[shard]!.maxBacklog) === 'E_OVERLOADED') this.stats.link_deferred++;
  }

  private writeCounted(shard: number, record: Uint8Array, limit: number): WriteRefusal | null {
    const refused = this.write(shard, record, limit);
    if (refused === 'E_OVERLOADED') this.stats.link_dropped++;
    return refused;
  }

  private control(shard: number, record: Uint8Array): WriteRefusal | null {
    const refused = this.write(shard, record, this.controlBacklog);
    if (refused === 'E_OVERLOADED') this.stats.link_dropped++;
    return refused;
  }

  /** `record` to `shard` unless it is not up (then dropped: null), or refused. */
  private write(shard: number, record: Uint8Array, limit: number): WriteRefusal | null {
    if (!this.accepts(shard)) {
      this.stats.link_discarded++;
      return null;
    }
    return this.writers[shard]!.write(record, limit);
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

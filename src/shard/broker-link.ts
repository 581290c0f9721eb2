/**
 * This shard's side of the broker (primary thread), which stores and routes the reliable
 * messages: what the shard writes to it (presence, membership, send/any/ack, processed pubs
 * and pubs to groups that keep history, joins of such groups, presence and history queries,
 * admin requests) and what it answers (deliveries, welcomes, sender acks, errors, group
 * messages, answers about groups, admin replies), over one ring each way.
 */
import { Buffer } from 'node:buffer';
import type { Codec } from '../codec/codec.js';
import { jsonTextOf } from '../codec/tasks.js';
import { LinkReader } from '../link/reader.js';
import { encodeRecord, ToBroker, ToShard } from '../link/records.js';
import { httpError, type ErrorCode, type HttpCode } from '../protocol/errors.js';
import type { Since } from '../protocol/frames.js';
import type { WelcomeLimits } from '../protocol/server-frames.js';
import { DoorbellRinger } from '../rings/doorbell.js';
import { HEADER_BYTES } from '../rings/ring.js';
import { QueuedRingWriter, type WriteRefusal } from '../link/queued-writer.js';
import { Latency, type LatencyRecorder } from '../metrics/latencies.js';
import { reportToFields, type ThreadReport } from '../metrics/report.js';
import { Counter } from '../shared/shard-counters.js';
import type { Logger } from '../util/logger.js';
import type { AdminForwarder } from './admin-http.js';
import { Broadcast } from './broadcast.js';
import { connOf, type Connection, type Socket } from './connection.js';
import type { Fail } from './fail.js';
import type { GroupOps } from './group-ops.js';
import type { LocalGroups } from './groups.js';
import type { Out } from './out.js';
import type { ConnectionRegistry } from './registry.js';

const METRICS_WANTED_RECORD = encodeRecord(ToBroker.METRICS_WANTED, []);

export interface BrokerLinkOptions {
  shard: number;
  /** What each `welcome` tells the client of the limits it must keep to. */
  welcomeLimits: WelcomeLimits;
  /** The broker's doorbell slot (it follows the shards' slots). */
  brokerSlot: number;
  doorbells: SharedArrayBuffer;
  toBroker: SharedArrayBuffer;
  fromBroker: SharedArrayBuffer;
  /** Where deliveries find their connections. */
  registry: ConnectionRegistry;
  /** Where processed group messages are published. */
  groups: LocalGroups;
  /** Frames to a connection, in order; deliveries counted as they go out. */
  out: Pick<Out, 'send' | 'deliver' | 'answer'>;
  /** Stored messages and the broker's answers to msgpack connections become binary frames here (in the pool when large). */
  codec: Pick<Codec, 'transcode' | 'deflate' | 'lz4Threshold'>;
  /** Where the broker's answers to joins and leaves of history groups go, and its group messages for connections catching up (set once the shard built it). */
  groupOps?: Pick<GroupOps, 'joined' | 'left' | 'livePub'>;
  counters: Float64Array;
  fail: Fail;
  /** Where the send latency (frame in → handed to uWS) is recorded. */
  latency: LatencyRecorder;
  /** A connection's `welcome` was just sent (corked): what it sent meanwhile may be handled now. */
  welcomed(ws: Socket): void;
  /** The primary asked for this shard's metrics report (a REPORT record): send it. */
  report(): void;
  /** How long an admin request waits for the broker before it is answered 504; default 10 s. */
  adminTimeoutMs?: number;
  /** Where a refused record is reported (once per reason). */
  log?: Pick<Logger, 'error'>;
  /** A record found the ring to the broker full and waits in its overflow. */
  overflowed?(): void;
  /** Overflow bytes past which a cluster pub is refused (E_OVERLOADED); default: no bound. */
  backlogLimit?: number;
}

/** Admin requests waiting for the broker at once; more are answered 503 at once. */
export const MAX_ADMIN_IN_FLIGHT = 64;

interface PendingAdmin {
  reply: (status: number, body: string) => void;
  timer: NodeJS.Timeout;
}

export class BrokerLink implements AdminForwarder {
  private readonly writer: QueuedRingWriter;
  private readonly reader: LinkReader;
  private readonly adminReplies = new Map<number, PendingAdmin>();
  private adminSeq = 0;
  /** Half of the largest record the ring to the broker holds. */
  private readonly maxMetricsBytes: number;

  constructor(private readonly options: BrokerLinkOptions) {
    const { counters, log } = options;
    this.writer = new QueuedRingWriter(options.toBroker, new DoorbellRinger(options.doorbells), options.brokerSlot, {
      onQueued: () => options.overflowed?.(),
      onRefused: (code, bytes, first) => {
        counters[Counter.ring_refused]!++;
        if (first) log?.error({ code, bytes }, 'record to the broker refused by its ring');
      },
    });
    this.maxMetricsBytes = (options.toBroker.byteLength - HEADER_BYTES) / 4;
    // Whatever waits here was meant for connections of this shard's previous incarnation.
    this.reader = new LinkReader(options.fromBroker, (kind, fields) => this.onRecord(kind, fields), true);
  }

  /** Bytes waiting for room in the ring to the broker (over a limit: refuse new work). */
  get backlog(): number {
    return this.writer.backlog;
  }

  /** How many times what waited for that ring all reached it (the broker caught up). */
  get backlogEmptied(): number {
    return this.writer.emptied;
  }

  /** When the oldest record waiting for that ring was queued; 0 when none waits. */
  get oldestQueuedAt(): number {
    return this.writer.oldestQueuedAt;
  }

  /** Handles up to `budget` records from the broker; returns how many it handled. */
  drain(budget: number): number {
    return this.reader.drain(budget);
  }

  stop(): void {
    this.writer.stop();
    // Their timers would hold the thread past its sockets; the requests are answered now.
    for (const id of [...this.adminReplies.keys()]) this.answerAdmin(id, ...adminError('unavailable', 'server shutting down'));
  }

  // --- to the broker -----------------------------------------------------------------------

  // Presence and membership ring the broker once per turn of the loop (writeSoon): in a
  // reconnect storm a ring per record woke it for almost every connection.

  /** The connection authenticated (the broker answers with its `welcome`) or closed. */
  presence(conn: Connection, online: 0 | 1): void {
    this.writer.writeSoon(encodeRecord(ToBroker.PRESENCE, [conn.sid, conn.user, online]));
  }

  /** The connection became a member of `group`, or changed whether it `watch`es its presence events. */
  joined(conn: Connection, group: string, watch = false): void {
    this.writer.writeSoon(encodeRecord(ToBroker.MEMBERSHIP, [conn.sid, group, 1, conn.weight, watch ? 1 : 0]));
  }

  left(conn: Connection, group: string): void {
    this.writer.writeSoon(encodeRecord(ToBroker.MEMBERSHIP, [conn.sid, group, 0, 0]));
  }

  /**
   * Cluster mode: a pub published here, as its JSON frame, for the broker to publish to the other
   * nodes; with `ack`, the broker answers the publisher once Redis took it. Refused (the ring's
   * reason) when its frame is too large for the link, or the link is too far behind.
   */
  clusterPub(group: string, frame: Uint8Array, ack: { conn: Connection; ref: string; id: string } | null): WriteRefusal | null {
    const fields = ack === null ? [group, frame] : [group, frame, ack.conn.sid, ack.ref, ack.id];
    const refused = this.writer.write(encodeRecord(ToBroker.CLUSTER_PUB, fields), this.options.backlogLimit ?? Infinity);
    if (refused === null) this.options.counters[Counter.cluster_pubs]!++;
    return refused;
  }

  ack(conn: Connection, id: string): void {
    this.writer.write(encodeRecord(ToBroker.ACK, [conn.sid, conn.user, id]));
  }

  /**
   * A `pub` whose data.type has a processor (`type`: the broker runs it), or to a group that
   * keeps history (the broker gives it its offset), then publishes it to every shard.
   */
  pub(conn: Connection, group: string, data: unknown, pri: number, ref: string | undefined, type: string | null, receivedAt: number): void {
    this.writeFor(conn, ref, encodeRecord(ToBroker.PUB, [conn.sid, ref ?? null, conn.user, group, jsonTextOf(data), pri, type, receivedAt]));
  }

  /** A join of a group that keeps history (after its MEMBERSHIP): answered JOINED, in the group's sequence. */
  groupJoin(conn: Connection, group: string, ref: string | undefined, since: Since | undefined): void {
    this.writeFor(conn, ref, encodeRecord(ToBroker.GROUP_JOIN, [conn.sid, group, ref ?? null, since?.offset ?? -1, since?.epoch ?? null]));
  }

  groupLeave(conn: Connection, group: string, ref: string | undefined): void {
    this.writeFor(conn, ref, encodeRecord(ToBroker.GROUP_LEAVE, [conn.sid, group, ref ?? null]));
  }

  presenceQuery(conn: Connection, group: string, ref: string | undefined, counts: boolean): void {
    this.writeFor(conn, ref, encodeRecord(ToBroker.PRESENCE_QUERY, [conn.sid, group, ref ?? null, counts ? 1 : 0]));
  }

  /** `limit` 0: the broker's history.max_page. */
  historyQuery(conn: Connection, group: string, ref: string | undefined, since: number, limit: number): void {
    this.writeFor(conn, ref, encodeRecord(ToBroker.HISTORY, [conn.sid, group, ref ?? null, since, limit]));
  }

  /** `receivedAt`: when the frame reached this shard (epochMs()), for the commit latency. */
  send(conn: Connection, to: string, data: unknown, pri: number, ref: string | undefined, at: number | undefined, type: string | null, receivedAt: number): void {
    this.writeFor(conn, ref, encodeRecord(ToBroker.SEND, [conn.sid, ref ?? null, conn.user, to, jsonTextOf(data), pri, at ?? 0, type, receivedAt]));
  }

  any(conn: Connection, group: string, data: unknown, pri: number, ref: string | undefined, strategy: string | undefined, type: string | null, receivedAt: number): void {
    this.writeFor(conn, ref, encodeRecord(ToBroker.ANY, [conn.sid, ref ?? null, conn.user, group, jsonTextOf(data), pri, strategy ?? null, type, receivedAt]));
  }

  /** This shard's metrics report, for the primary to merge. */
  metrics(report: ThreadReport): void {
    let record = encodeRecord(ToBroker.METRICS, reportToFields(report));
    // A record the ring cannot take would wait forever and hold up every record behind it:
    // histograms that large (never seen; compressed they take KBs) are left out, summaries stay.
    if (record.byteLength > this.maxMetricsBytes) record = encodeRecord(ToBroker.METRICS, reportToFields({ ...report, histograms: report.histograms.map(() => []) }));
    this.writer.write(record);
  }

  /** Wakes the primary to render the metrics documents a client asked for (src/metrics/snapshot.ts). */
  metricsWanted(): void {
    this.writer.write(METRICS_WANTED_RECORD);
  }

  /** An admin HTTP request: the broker owns the store it is about. */
  forward(method: string, path: string, reply: (status: number, body: string) => void): void {
    if (this.adminReplies.size >= MAX_ADMIN_IN_FLIGHT) {
      return reply(...adminError('unavailable', `${MAX_ADMIN_IN_FLIGHT} admin requests are already waiting for the message broker; retry shortly`));
    }
    const id = this.adminSeq++;
    const refused = this.writer.write(encodeRecord(ToBroker.ADMIN, [id, method, path]));
    if (refused !== null) {
      const { status, body } = refused === 'E_TOO_LARGE' ? httpError('bad_request', 'request too large for the link to the broker') : httpError('unavailable');
      return reply(status, JSON.stringify(body));
    }
    const timeoutMs = this.options.adminTimeoutMs ?? 10_000;
    const timer = setTimeout(() => this.answerAdmin(id, ...adminError('timeout', `the message broker did not answer within ${timeoutMs} ms`)), timeoutMs);
    this.adminReplies.set(id, { reply, timer });
  }

  /** A record made of a client's frame: refused by the ring (never, while ring_bytes >= 4 x max_payload), the client is told. */
  private writeFor(conn: Connection, ref: string | undefined, record: Uint8Array): void {
    const refused: WriteRefusal | null = this.writer.write(record);
    if (refused === null) return;
    const ws = this.options.registry.sid(conn.sid);
    const message = refused === 'E_TOO_LARGE' ? 'message too large for the link to the message broker' : 'the message broker is behind; retry shortly';
    if (ws) this.options.fail(ws, conn, refused, message, ref);
  }

  /** Answers admin request `id` once: by the broker, or by a timeout or shutdown before it. */
  private answerAdmin(id: number, status: number, body: string): void {
    const pending = this.adminReplies.get(id);
    if (pending === undefined) return; // answered already: the broker came late
    this.adminReplies.delete(id);
    clearTimeout(pending.timer);
    pending.reply(status, body);
  }

  // --- from the broker ---------------------------------------------------------------------

  private onRecord(kind: number, f: unknown[]): void {
    const { registry } = this.options;
    switch (kind) {
      case ToShard.DELIVER_USER: {
        const sockets = registry.user(f[0] as string);
        if (!sockets) return;
        const frame = f[1] as string;
        let binary: Uint8Array | Promise<Uint8Array> | null = null;
        let sent = 0;
        for (const ws of sockets) {
          const conn = connOf(ws);
          // Not welcomed yet: the broker wrote this before it saw that connection, so the
          // message is among the pending ones it delivers right after the welcome.
          if (!conn.ready) continue;
          // One binary frame for all of the user's msgpack connections.
          if (this.options.out.deliver(ws, conn, conn.frames.binary ? (binary ??= this.options.codec.transcode(frame)) : frame)) sent++;
        }
        if (sent > 0) this.measure(f);
        return;
      }
      case ToShard.DELIVER_SID: {
        const ws = registry.sid(f[0] as string);
        if (!ws) return;
        const conn = connOf(ws);
        const frame = f[1] as string;
        if (this.options.out.deliver(ws, conn, conn.frames.binary ? this.options.codec.transcode(frame) : frame)) this.measure(f);
        return;
      }
      case ToShard.SENDER_ACK: {
        const ws = registry.sid(f[0] as string);
        if (!ws) return;
        const conn = connOf(ws);
        const ref = (f[1] as string | null) ?? undefined;
        this.options.out.send(ws, conn, f.length > 3 ? conn.frames.pubAck(ref, f[2] as string, f[3] as number) : conn.frames.ack(ref, f[2] as string));
        return;
      }
      case ToShard.WELCOME: {
        const ws = registry.sid(f[0] as string);
        if (!ws) return;
        const conn = connOf(ws);
        ws.cork(() => {
          this.options.out.send(ws, conn, conn.frames.welcome(conn.user!, conn.sid, this.options.shard, f[1] as number, conn.expiresAt, this.options.welcomeLimits));
          this.options.welcomed(ws);
        });
        return;
      }
      case ToShard.ERROR: {
        const ws = registry.sid(f[0] as string);
        if (ws) this.options.fail(ws, connOf(ws), f[1] as ErrorCode, f[2] as string, (f[3] as string | null) ?? undefined, f[4] === 1, f[5] as string | undefined);
        return;
      }
      case ToShard.GROUP_PUB: {
        const message = Broadcast.encoded(this.options.codec, Buffer.from(f[1] as string));
        if (this.options.groups.publish(f[0] as string, message) > 0 && f.length > 2) this.options.latency.since(Latency.pub, f[2] as number);
        this.options.groupOps?.livePub(f[0] as string, message);
        return;
      }
      case ToShard.ADMIN_REPLY:
        return this.answerAdmin(f[0] as number, f[1] as number, f[2] as string);
      case ToShard.REPLY: {
        // `presence`, `history`, a recovery's replay: JSON from the broker, binary (in the pool when large) for msgpack.
        const ws = registry.sid(f[0] as string);
        if (!ws) return;
        const conn = connOf(ws);
        const frame = f[1] as string;
        this.options.out.answer(ws, conn, conn.frames.binary ? this.options.codec.transcode(frame) : frame);
        return;
      }
      case ToShard.JOINED:
        return this.options.groupOps?.joined(f);
      case ToShard.LEFT:
        return this.options.groupOps?.left(f);
      case ToShard.REPORT:
        return this.options.report();
    }
  }

  /** Measures a DELIVER record's live messages once (out.ts counts the frames and bytes as they go). */
  private measure(f: unknown[]): void {
    if (f.length > 3) this.options.latency.since(Latency.send, f[2] as number, f[3] as number);
  }
}

/** An admin answer from the one table of HTTP codes, as `reply` takes it. */
function adminError(code: HttpCode, message: string): [number, string] {
  const { status, body } = httpError(code, message);
  return [status, JSON.stringify(body)];
}

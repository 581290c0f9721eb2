/**
 * This shard's side of the broker (primary thread), which stores and routes the reliable
 * messages: what the shard writes to it (presence, membership, send/any/ack, processed pubs,
 * admin requests) and what it answers (deliveries, welcomes, sender acks, errors, processed
 * group messages, admin replies), over one ring each way.
 */
import { LinkReader } from '../link/reader.js';
import { encodeRecord, ToBroker, ToShard } from '../link/records.js';
import type { ErrorCode } from '../protocol/errors.js';
import { encodeAck, encodeWelcome } from '../protocol/json-codec.js';
import { DoorbellRinger } from '../rings/doorbell.js';
import { HEADER_BYTES } from '../rings/ring.js';
import { QueuedRingWriter } from '../link/queued-writer.js';
import { Latency, type LatencyRecorder } from '../metrics/latencies.js';
import { reportToFields, type ThreadReport } from '../metrics/report.js';
import { Counter } from '../shared/shard-table.js';
import type { AdminForwarder } from './admin-http.js';
import type { Connection } from './connection.js';
import type { Fail } from './fail.js';
import type { LocalGroups } from './groups.js';
import type { ConnectionRegistry } from './registry.js';

export interface BrokerLinkOptions {
  shard: number;
  /** The broker's doorbell slot (it follows the shards' slots). */
  brokerSlot: number;
  doorbells: SharedArrayBuffer;
  toBroker: SharedArrayBuffer;
  fromBroker: SharedArrayBuffer;
  /** Where deliveries find their connections. */
  registry: ConnectionRegistry;
  /** Where processed group messages are published. */
  groups: LocalGroups;
  counters: Float64Array;
  fail: Fail;
  /** Where the send latency (store commit → handed to uWS) is recorded. */
  latency: LatencyRecorder;
}

export class BrokerLink implements AdminForwarder {
  private readonly writer: QueuedRingWriter;
  private readonly reader: LinkReader;
  private readonly adminReplies = new Map<number, (status: number, body: string) => void>();
  private adminSeq = 0;
  /** Half of the largest record the ring to the broker holds. */
  private readonly maxMetricsBytes: number;

  constructor(private readonly options: BrokerLinkOptions) {
    this.writer = new QueuedRingWriter(options.toBroker, new DoorbellRinger(options.doorbells), options.brokerSlot);
    this.maxMetricsBytes = (options.toBroker.byteLength - HEADER_BYTES) / 4;
    // Whatever waits here was meant for connections of this shard's previous incarnation.
    this.reader = new LinkReader(options.fromBroker, (kind, fields) => this.onRecord(kind, fields), true);
  }

  /** Bytes waiting for room in the ring to the broker (over a limit: refuse new work). */
  get backlog(): number {
    return this.writer.backlog;
  }

  /** Handles up to `budget` records from the broker; returns how many it handled. */
  drain(budget: number): number {
    return this.reader.drain(budget);
  }

  stop(): void {
    this.writer.stop();
  }

  // --- to the broker -----------------------------------------------------------------------

  /** The connection authenticated (the broker answers with its `welcome`) or closed. */
  presence(conn: Connection, online: 0 | 1): void {
    this.writer.write(encodeRecord(ToBroker.PRESENCE, [conn.sid, conn.user, online]));
  }

  joined(conn: Connection, group: string): void {
    this.writer.write(encodeRecord(ToBroker.MEMBERSHIP, [conn.sid, group, 1, conn.weight]));
  }

  left(conn: Connection, group: string): void {
    this.writer.write(encodeRecord(ToBroker.MEMBERSHIP, [conn.sid, group, 0, 0]));
  }

  ack(conn: Connection, id: string): void {
    this.writer.write(encodeRecord(ToBroker.ACK, [conn.sid, conn.user, id]));
  }

  /** A `pub` whose data.type has a processor: the broker runs it and publishes the result. */
  pub(conn: Connection, group: string, data: unknown, pri: number, ref: string | undefined, type: string): void {
    this.writer.write(encodeRecord(ToBroker.PUB, [conn.sid, ref ?? null, conn.user, group, JSON.stringify(data), pri, type]));
  }

  send(conn: Connection, to: string, data: unknown, pri: number, ref: string | undefined, at: number | undefined, type: string | null): void {
    this.writer.write(encodeRecord(ToBroker.SEND, [conn.sid, ref ?? null, conn.user, to, JSON.stringify(data), pri, at ?? 0, type]));
  }

  any(conn: Connection, group: string, data: unknown, pri: number, ref: string | undefined, strategy: string | undefined, type: string | null): void {
    this.writer.write(encodeRecord(ToBroker.ANY, [conn.sid, ref ?? null, conn.user, group, JSON.stringify(data), pri, strategy ?? null, type]));
  }

  /** This shard's metrics report, for the primary to merge. */
  metrics(report: ThreadReport): void {
    let record = encodeRecord(ToBroker.METRICS, reportToFields(report));
    // A record the ring cannot take would wait forever and hold up every record behind it:
    // histograms that large (never seen; compressed they take KBs) are left out, summaries stay.
    if (record.byteLength > this.maxMetricsBytes) record = encodeRecord(ToBroker.METRICS, reportToFields({ ...report, histograms: report.histograms.map(() => '') }));
    this.writer.write(record);
  }

  /** An admin HTTP request: the broker owns the store it is about. */
  forward(method: string, path: string, reply: (status: number, body: string) => void): void {
    const id = this.adminSeq++;
    this.adminReplies.set(id, reply);
    this.writer.write(encodeRecord(ToBroker.ADMIN, [id, method, path]));
  }

  // --- from the broker ---------------------------------------------------------------------

  private onRecord(kind: number, f: unknown[]): void {
    const { registry, counters } = this.options;
    switch (kind) {
      case ToShard.DELIVER_USER: {
        const sockets = registry.user(f[0] as string);
        if (!sockets) return;
        const frame = f[1] as string;
        for (const ws of sockets) ws.send(frame);
        this.delivered(f, sockets.size);
        return;
      }
      case ToShard.DELIVER_SID:
        if (this.sendTo(f[0] as string, f[1] as string)) this.delivered(f, 1);
        return;
      case ToShard.SENDER_ACK:
        this.sendTo(f[0] as string, encodeAck((f[1] as string | null) ?? undefined, f[2] as string));
        return;
      case ToShard.WELCOME: {
        const ws = registry.sid(f[0] as string);
        if (ws) ws.send(encodeWelcome(ws.getUserData().user!, f[0] as string, this.options.shard, f[1] as number));
        return;
      }
      case ToShard.ERROR: {
        const ws = registry.sid(f[0] as string);
        if (ws) this.options.fail(ws, ws.getUserData(), f[1] as ErrorCode, f[2] as string, (f[3] as string | null) ?? undefined);
        return;
      }
      case ToShard.GROUP_PUB:
        this.options.groups.publish(f[0] as string, Buffer.from(f[1] as string));
        return;
      case ToShard.ADMIN_REPLY: {
        const reply = this.adminReplies.get(f[0] as number);
        this.adminReplies.delete(f[0] as number);
        reply?.(f[1] as number, f[2] as string);
        return;
      }
    }
  }

  /** Counts a DELIVER record's frame, sent to `connections`, and measures its live messages once. */
  private delivered(f: unknown[], connections: number): void {
    const { counters, latency } = this.options;
    counters[Counter.deliveries]! += connections;
    counters[Counter.bytes_out]! += connections * Buffer.byteLength(f[1] as string);
    if (f.length > 3) latency.since(Latency.send, f[2] as number, f[3] as number);
  }

  private sendTo(sid: string, frame: string): boolean {
    const ws = this.options.registry.sid(sid);
    if (!ws) return false;
    ws.send(frame);
    return true;
  }
}

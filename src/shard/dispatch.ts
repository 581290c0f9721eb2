/**
 * Every frame a client sends, in order: size limit, rate limit, decode, then its op — pub
 * locally (a `pub` is encoded once per encoding, published here and forwarded to the other
 * shards), join/leave/presence/history in group-ops.ts, send/any/ack, processed pubs and pubs
 * to groups that keep history through the broker. This is the hot path: a frame is decoded once and a `pub` encoded once for every recipient; add nothing per
 * frame here.
 *
 * A frame of at least `performance.codec_offload_threshold` bytes is decoded, and a pub's
 * frames encoded, in the codec pool (src/codec) while the loop goes on; the connection's
 * next frames wait behind it (inbound.ts), so its frames are still handled in order.
 */
import { performance } from 'node:perf_hooks';
import type { Codec } from '../codec/codec.js';
import { inflateLz4 } from '../codec/lz4.js';
import { dataTypeOf, EncodedData, type PrepareResult } from '../codec/tasks.js';
import { typeOfData } from '../link/records.js';
import { epochMs, epochMsAt } from '../metrics/clock.js';
import { Latency, type LatencyRecorder } from '../metrics/latencies.js';
import { ErrorCodes } from '../protocol/errors.js';
import type { ClientFrame, FrameError } from '../protocol/frames.js';
import { decodeJson } from '../protocol/json-codec.js';
import { decodeMsgpack } from '../protocol/msgpack-codec.js';
import { frameErrorIn } from '../protocol/server-frames.js';
import type { HistoryPatterns } from '../shared/history-patterns.js';
import { Counter } from '../shared/shard-counters.js';
import type { Logger } from '../util/logger.js';
import type { Admission } from './admission.js';
import { Broadcast, ringPayload } from './broadcast.js';
import type { BrokerLink } from './broker-link.js';
import type { Backpressure } from './backpressure.js';
import { connOf, type Connection, type RateLimiter, type Socket } from './connection.js';
import type { CrossShard } from './cross-shard.js';
import type { Fail } from './fail.js';
import type { GroupOps } from './group-ops.js';
import type { LocalGroups } from './groups.js';
import { InboundFrames, type InboundHandler } from './inbound.js';
import type { Out } from './out.js';
import type { ClusterState } from '../shared/cluster-state.js';

/**
 * Frames a connection may send before it is ready (its welcome on the way), besides at most max_payload bytes of them: enough for a client that sends `auth` and
 * its joins at once, small enough that a socket that floods before its identity costs little.
 */
export const MAX_HELD_FRAMES = 32;

export interface DispatchLimits {
  maxPayload: number;
  /** For the refusal's message only: the limiter enforces it. */
  messagesPerSecond: number;
  rateViolationsBeforeClose: number;
  badFramesBeforeClose: number;
  requireMembership: boolean;
}

export interface DispatchOptions {
  limits: DispatchLimits;
  limiter: RateLimiter;
  counters: Float64Array;
  log: Logger;
  fail: Fail;
  /** Message ids of pubs are this prefix plus a per-shard sequence. */
  msgIdPrefix: string;
  admission: Pick<Admission, 'authenticate' | 'refresh'>;
  link: Pick<BrokerLink, 'ack' | 'pub' | 'send' | 'any' | 'clusterPub'>;
  /** Whether a connection's send/any/ack, or pub to a group that keeps history, is refused while the broker is behind. */
  backpressure: Pick<Backpressure, 'refuses'>;
  /** Cluster mode (src/cluster): pubs also go to the other nodes. null: one process. */
  cluster: Pick<ClusterState, 'up'> | null;
  cross: Pick<CrossShard, 'forwardPub'>;
  /** Whether a connection's pub is refused while a ring to another shard is backed up. */
  pubBackpressure: Pick<Backpressure, 'refuses'>;
  groups: LocalGroups;
  /** join, leave, presence and history. */
  groupOps: Pick<GroupOps, 'join' | 'leave' | 'presence' | 'history'>;
  /** Which groups keep history: their pubs go through the broker (websocket.history). */
  history: HistoryPatterns;
  /** `data.type` values with a processor at start-up. */
  processorTypes: readonly string[];
  /** Where the pub latency is recorded. */
  latency: LatencyRecorder;
  codec: Codec;
  out: Pick<Out, 'send' | 'deliver'>;
  /** Where msgpack connections are: a pub's binary frame is made for them (and carried to other shards) only if any. */
  binary: BinaryConnections;
}

export interface BinaryConnections {
  /** On any shard, this one included. */
  anywhere(): boolean;
  /** On another shard: ring records carry the binary frame too. */
  elsewhere(): boolean;
}

export class Dispatcher {
  private readonly limits: DispatchLimits;
  private readonly limiter: RateLimiter;
  private readonly counters: Float64Array;
  private readonly fail: Fail;
  private readonly link: DispatchOptions['link'];
  /** null when no group keeps history: then pubs never ask. */
  private readonly history: HistoryPatterns | null;
  /** `data.type` values with a processor: pubs carrying one detour through the broker. */
  private processorTypes: Set<string>;
  private msgSeq = 0;
  /** epochMs() when the frame being handled arrived: a pub's latency starts here, on every shard. */
  private receivedAt = 0;
  private readonly inbound: InboundFrames;

  constructor(private readonly options: DispatchOptions) {
    this.limits = options.limits;
    this.limiter = options.limiter;
    this.counters = options.counters;
    this.fail = options.fail;
    this.link = options.link;
    this.history = options.history.any ? options.history : null;
    this.processorTypes = new Set(options.processorTypes);
    this.inbound = new InboundFrames(
      options.codec,
      {
        frame: (ws, conn, bytes, isBinary, receivedAt, now) => this.frame(ws, conn, bytes, isBinary, receivedAt, now),
        prepared: (ws, conn, result, msgId, receivedAt, now) => this.prepared(ws, conn, result, msgId, receivedAt, now),
        task: (conn, bytes, isBinary) => this.task(conn, bytes, isBinary),
        flooded: (ws, conn, message) => this.fail(ws, conn, 'E_RATE_LIMITED', message, undefined, true),
        tooLarge: (ws, conn, bytes) => this.fail(ws, conn, 'E_TOO_LARGE', `frame of ${bytes} bytes is over max_payload (${this.limits.maxPayload})`, undefined, true),
      },
      options.limits.maxPayload,
    );
  }

  /** The set of processed `data.type` values changed (a processor was registered or removed). */
  setProcessorTypes(types: readonly string[]): void {
    this.processorTypes = new Set(types);
  }

  message(ws: Socket, message: ArrayBuffer, isBinary: boolean): void {
    const seenAt = performance.now();
    const receivedAt = epochMsAt(seenAt);
    const conn = connOf(ws);
    const now = Date.now();
    const { limits, counters } = this;
    conn.lastSeen = seenAt;
    counters[Counter.frames_in]!++;
    counters[Counter.bytes_in]! += message.byteLength;
    if (message.byteLength > limits.maxPayload) return this.tooLarge(ws, conn, message.byteLength);
    // All that the frames of a welcomed connection pay for the wait below: one boolean.
    if (!conn.ready) return this.early(ws, conn, message, isBinary, receivedAt, now);
    this.inbound.arrive(ws, conn, message, isBinary, receivedAt, now);
  }

  /**
   * A ping, or a pong we did not ask for, from the client. uWS has answered a ping with a pong
   * already, so it cannot be refused, but it counts against the frame rate like any frame, and
   * a connection that keeps sending them past it is closed (4029) as a flood of frames is: four
   * connections pinging flat out (97,000 a second) had taken another client's P50 on the shard
   * from 0.45 to 6.7 ms, never closed.
   */
  controlFrame(ws: Socket): void {
    const conn = connOf(ws);
    conn.lastSeen = performance.now();
    this.admit(ws, conn, Date.now());
  }

  /** The connection's `welcome` was sent: the frames that waited are handled now, in order. Call it corked. */
  resume(ws: Socket): void {
    const conn = connOf(ws);
    conn.ready = true;
    const held = conn.held;
    if (held === null) return;
    conn.held = null;
    conn.heldBytes = 0;
    const now = Date.now();
    for (const frame of held) {
      if (conn.closed) return;
      if (frame.bytes === null) this.inbound.refuse(ws, conn, frame.oversize);
      else this.inbound.arrive(ws, conn, frame.bytes, frame.binary, frame.receivedAt, now);
    }
  }

  /**
   * A frame over max_payload: E_TOO_LARGE and the close, in its turn, behind the frames that came
   * before it and wait (for the welcome, or for the codec pool), which are handled first.
   */
  private tooLarge(ws: Socket, conn: Connection, bytes: number): void {
    const held = conn.ready ? null : conn.held;
    if (held === null) return this.inbound.refuse(ws, conn, bytes);
    if (held.length >= MAX_HELD_FRAMES) return this.fail(ws, conn, 'E_RATE_LIMITED', `over ${MAX_HELD_FRAMES} frames sent before the welcome`, undefined, true);
    held.push({ bytes: null, oversize: bytes, binary: false, receivedAt: 0 });
  }

  /**
   * A frame before the connection is ready. The first frame of a connection that came without
   * identity is its `auth`, handled at once; any other frame waits (bounded) until resume(),
   * for the broker's `welcome`, always a connection's first frame.
   */
  private early(ws: Socket, conn: Connection, message: ArrayBuffer, isBinary: boolean, receivedAt: number, now: number): void {
    // Decoded here whatever its size: a connection's first frames are few.
    if (conn.user === null) return this.frame(ws, conn, message, isBinary, receivedAt, now);
    const held = conn.held ?? (conn.held = []);
    const maxBytes = this.limits.maxPayload;
    if (held.length >= MAX_HELD_FRAMES || conn.heldBytes + message.byteLength > maxBytes) {
      return this.fail(ws, conn, 'E_RATE_LIMITED', `over ${MAX_HELD_FRAMES} frames or ${maxBytes} bytes sent before the welcome`, undefined, true);
    }
    held.push({ bytes: message.slice(0), oversize: 0, binary: isBinary, receivedAt });
    conn.heldBytes += message.byteLength;
  }

  /**
   * Decode, rate limit and handle one frame. Decoded first, so that a refusal names the frame's
   * `ref` (a client can tell which request it was): a connection is closed after
   * rate_violations_before_close refusals, so at most that many frames are decoded in vain.
   */
  private frame(ws: Socket, conn: Connection, message: ArrayBuffer, isBinary: boolean, receivedAt: number, now: number): void {
    const frame = conn.frames.binary ? decodeMsgpack(message, isBinary, this.limits.maxPayload, inflateLz4) : decodeJson(message, isBinary);
    if (!this.admit(ws, conn, now, frame)) return;
    this.receivedAt = receivedAt;
    this.decoded(ws, conn, frame);
  }

  /** The per-connection rate limit, applied to each frame in its turn (`frame`: whose `ref` a refusal names). */
  private admit(ws: Socket, conn: Connection, now: number, frame?: ClientFrame | FrameError): boolean {
    if (this.limiter.take(conn, now)) return true;
    const { limits } = this;
    const close = ++conn.rateViolations >= limits.rateViolationsBeforeClose;
    const ref = frame !== undefined && 'ref' in frame && typeof frame.ref === 'string' ? frame.ref : undefined;
    this.fail(ws, conn, 'E_RATE_LIMITED', `over ${limits.messagesPerSecond} frames per second`, ref, close);
    return false;
  }

  private decoded(ws: Socket, conn: Connection, frame: ClientFrame | FrameError): void {
    const { counters } = this;
    const { out } = this.options;
    if (frame.op === 'err') {
      const close = ++conn.badFrames >= this.limits.badFramesBeforeClose;
      counters[Counter.errors_bad_frame]!++;
      out.send(ws, conn, frameErrorIn(conn.frames, frame));
      if (close) ws.end(ErrorCodes.E_BAD_FRAME.close, 'too many bad frames');
      return;
    }
    try {
      this.handle(ws, conn, frame);
    } catch (err) {
      // One frame the server fails on costs that frame only, never the shard.
      counters[Counter.errors_internal]!++;
      this.options.log.error({ code: 'E_INTERNAL', err, op: frame.op }, 'frame handler failed');
      out.send(ws, conn, conn.frames.error('E_INTERNAL', 'internal error handling this frame', 'ref' in frame ? frame.ref : undefined));
    }
  }

  /** The codec pool's task for a large frame: a pub's message id and time are fixed now, as for one decoded here. */
  private task(conn: Connection, bytes: Uint8Array, isBinary: boolean): ReturnType<InboundHandler['task']> {
    const envelope = conn.user === null ? null : { id: this.nextMsgId(), from: conn.user, ts: Date.now() };
    return {
      msgId: envelope?.id ?? null,
      task: {
        bytes,
        isBinary,
        msgpack: conn.frames.binary,
        maxPayload: this.limits.maxPayload,
        envelope,
        msgpackForm: this.options.binary.anywhere(),
        processorTypes: [...this.processorTypes],
        historyPatterns: this.history?.patterns ?? [],
      },
    };
  }

  /** A frame the codec pool decoded (or failed on), handled in its turn. */
  private prepared(ws: Socket, conn: Connection, result: PrepareResult | Error, msgId: string | null, receivedAt: number, now: number): void {
    if (!this.admit(ws, conn, now, result instanceof Error ? undefined : result.frame)) return;
    this.receivedAt = receivedAt;
    if (result instanceof Error) {
      this.counters[Counter.errors_internal]!++;
      this.options.log.error({ code: 'E_INTERNAL', err: result }, 'codec pool failed on a frame');
      return this.options.out.send(ws, conn, conn.frames.error('E_INTERNAL', 'internal error decoding this frame'));
    }
    const { frame, forms } = result;
    if (forms !== null && frame.op !== 'err') (frame as { data: unknown }).data = new EncodedData(forms, msgId);
    this.decoded(ws, conn, frame);
  }

  private handle(ws: Socket, conn: Connection, frame: ClientFrame): void {
    if (conn.user === null) {
      if (frame.op !== 'auth') return this.fail(ws, conn, 'E_UNAUTHORIZED', 'the first frame must be auth', undefined, true);
      return this.options.admission.authenticate(ws, conn, frame.token, frame.ref);
    }
    switch (frame.op) {
      case 'pub':
        return this.pub(ws, conn, frame.group, frame.data, frame.pri, frame.ref);
      case 'send':
        if (this.brokerBusy(ws, conn, frame.ref)) return;
        return this.link.send(conn, frame.to, frame.data, frame.pri, frame.ref, frame.at, this.processorType(frame.data), this.receivedAt);
      case 'any':
        return this.any(ws, conn, frame);
      case 'ack':
        // Refused, not queued without bound, while the broker is behind: the messages stay in
        // flight and their ack timers deliver them again (each err names its id, as E_UNKNOWN_ID does).
        if (this.options.backpressure.refuses(conn, frame.ids.length)) {
          for (const id of frame.ids) this.fail(ws, conn, 'E_OVERLOADED', 'the message broker is behind: this ack was not taken and the message will be delivered again; ack it then', undefined, false, id);
          return;
        }
        for (const id of frame.ids) this.link.ack(conn, id);
        return;
      case 'join':
        return this.options.groupOps.join(ws, conn, frame);
      case 'leave':
        return this.options.groupOps.leave(ws, conn, frame.group, frame.ref);
      case 'presence':
        return this.options.groupOps.presence(ws, conn, frame);
      case 'history':
        return this.options.groupOps.history(ws, conn, frame);
      case 'ping':
        this.options.out.send(ws, conn, conn.frames.pong(frame.t, Date.now()));
        return;
      case 'auth':
        return this.options.admission.refresh(ws, conn, frame.token, frame.ref);
    }
  }

  private pub(ws: Socket, conn: Connection, group: string, data: unknown, pri: number, ref: string | undefined): void {
    if (this.limits.requireMembership && !conn.groups.has(group)) {
      return this.fail(ws, conn, 'E_NOT_MEMBER', `join ${group} before publishing to it`, ref);
    }
    if (conn.allowed !== null && !conn.allowed.allows(group)) return this.fail(ws, conn, 'E_FORBIDDEN', `not allowed to publish to ${group}`, ref);
    const history = this.history !== null && this.history.keeps(group);
    if (history && this.brokerBusy(ws, conn, ref)) return;
    if ((this.processorTypes.size > 0 || data instanceof EncodedData) && this.detourPub(ws, conn, group, data, pri, ref, history)) return;
    if (history) {
      // The broker gives it its offset and publishes it to every shard.
      this.counters[Counter.pubs]!++;
      return this.link.pub(conn, group, data, pri, ref, null, this.receivedAt);
    }
    const { cross, groups, codec } = this.options;
    if (this.options.pubBackpressure.refuses(conn)) {
      this.counters[Counter.ring_overloaded]!++;
      return this.fail(ws, conn, 'E_OVERLOADED', 'cross-shard rings are full; retry shortly', ref);
    }
    // A frame prepared in the pool has its message id (and frames) already.
    const id = data instanceof EncodedData ? data.msgId! : this.nextMsgId();
    const message = Broadcast.of(codec, id, conn.user!, group, data, pri, Date.now());
    this.counters[Counter.pubs]!++;
    // Frames to the publisher still wait for the codec pool (a msgpack connection's backlog): its
    // own copy goes behind them, so that it keeps its place among the shard's replies.
    const queued = conn.outq !== null && conn.groups.has(group);
    if (groups.publish(group, message, queued ? ws : null) > 0 || queued) this.options.latency.since(Latency.pub, this.receivedAt);
    if (queued) this.options.out.deliver(ws, conn, conn.frames.binary ? message.binary() : message.json());
    cross.forwardPub(group, (maxBytes) => ringPayload(message, this.options.binary.elsewhere(), maxBytes), this.receivedAt);
    const cluster = this.options.cluster;
    if (cluster !== null) {
      // Delivered on this node; without Redis the other nodes cannot have it, and the publisher is told so.
      if (!cluster.up) return this.fail(ws, conn, 'E_CLUSTER_UNAVAILABLE', 'Redis is unreachable: delivered to the members on this node only', ref);
      // The JSON frame: each node's shards make the binary frame for their msgpack members (broadcast.ts).
      // It can be several times the pub's msgpack frame (a control character: 6 bytes as JSON).
      // Its ack comes from the broker once Redis took it: a pub acked here and sent into a frozen
      // Redis never reached the other nodes (a review's chaos runs).
      const refused = this.link.clusterPub(group, message.json(), ref === undefined ? null : { conn, ref, id });
      if (refused === 'E_TOO_LARGE') return this.fail(ws, conn, refused, 'as JSON this message is over half of performance.ring_bytes, too large for the other nodes: delivered to the members on this node only', ref);
      if (refused !== null) return this.fail(ws, conn, refused, 'the message broker is behind: delivered to the members on this node only; retry shortly', ref);
      return;
    }
    if (ref !== undefined) this.options.out.send(ws, conn, conn.frames.ack(ref, id));
  }

  private nextMsgId(): string {
    return this.options.msgIdPrefix + (this.msgSeq++).toString(36);
  }

  /**
   * A pub whose data.type has a processor goes to the broker, which runs it and publishes (and
   * keeps it, with its offset, when its group keeps history).
   */
  private detourPub(ws: Socket, conn: Connection, group: string, data: unknown, pri: number, ref: string | undefined, history: boolean): boolean {
    let type: string | null;
    if (data instanceof EncodedData) {
      // Judged in the pool, on the processors known when the frame went there and the history
      // patterns: it comes back either as frames to publish or as JSON text for the broker
      // (which runs a processor only when its type has one).
      if (data.forms.dataJson === null) return false;
      type = data.forms.type;
    } else {
      type = typeOfData(data);
      if (type === null || !this.processorTypes.has(type)) return false;
    }
    // A processed pub goes through the broker as a history pub does: refused while it is behind
    // (a history pub was asked already: once against the connection's allowance).
    if (!history && this.brokerBusy(ws, conn, ref)) return true;
    this.counters[Counter.pubs]!++;
    this.link.pub(conn, group, data, pri, ref, type, this.receivedAt);
    return true;
  }

  private any(ws: Socket, conn: Connection, frame: Extract<ClientFrame, { op: 'any' }>): void {
    const { group, ref } = frame;
    if (this.limits.requireMembership && !conn.groups.has(group)) {
      return this.fail(ws, conn, 'E_NOT_MEMBER', `join ${group} before sending to it`, ref);
    }
    if (conn.allowed !== null && !conn.allowed.allows(group)) return this.fail(ws, conn, 'E_FORBIDDEN', `not allowed to send to ${group}`, ref);
    if (this.brokerBusy(ws, conn, ref)) return;
    this.link.any(conn, group, frame.data, frame.pri, ref, frame.strategy, this.processorType(frame.data), this.receivedAt);
  }

  /** send/any/ack (and pubs that go through the broker) are refused, not queued without bound, while the ring to the broker is backed up. */
  private brokerBusy(ws: Socket, conn: Connection, ref: string | undefined): boolean {
    if (!this.options.backpressure.refuses(conn)) return false;
    this.fail(ws, conn, 'E_OVERLOADED', 'the message broker is behind; retry shortly', ref);
    return true;
  }

  private processorType(data: unknown): string | null {
    if (this.processorTypes.size === 0) return null;
    const type = dataTypeOf(data);
    return type !== null && this.processorTypes.has(type) ? type : null;
  }
}

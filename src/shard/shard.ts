/**
 * One acceptor thread: a uWS App on the shared port (SO_REUSEPORT), owning its sockets
 * outright. Groups are uWS topics; a `pub` is encoded once, published locally and its bytes
 * forwarded to the other shards over the rings.
 */
import { Authenticator } from '../auth/identity.js';
import { LinkReader } from '../link/reader.js';
import { QueuedRingWriter } from '../link/queued-writer.js';
import { encodeRecord, ToBroker, ToShard, typeOfData } from '../link/records.js';
import { DoorbellRinger } from '../rings/doorbell.js';
import type { Config } from '../config/schema.js';
import { CloseCodes, ErrorCodes, type ErrorCode } from '../protocol/errors.js';
import type { ClientFrame } from '../protocol/frames.js';
import {
  JSON_PROTOCOL,
  decodeJson,
  encodeAck,
  encodeError,
  encodeFrameError,
  encodeGroupMsg,
  encodeJoined,
  encodeLeft,
  encodePong,
  encodeWelcome,
} from '../protocol/json-codec.js';
import { Counter, ShardStatus, ShardTable } from '../shared/shard-table.js';
import type { PrimaryToShard, ShardInit, ShardToPrimary } from '../shared/thread-messages.js';
import { createLogger, type Logger } from '../util/logger.js';
import { uWS, type HttpResponse, type TemplatedApp, type WebSocket, type us_listen_socket } from '../util/uws.js';
import { CrossShard } from './cross-shard.js';
import { newConnection, RateLimiter, type Connection } from './connection.js';
import { attachAdminRoutes } from './admin-http.js';
import { attachHttpRoutes } from './http.js';

/** Close code for a connection silent past idle_timeout (an ocs.v1 addition, see PROTOCOL.md). */
export const IDLE_CLOSE = 4408;

export interface ShardChannel {
  post(message: ShardToPrimary): void;
  onMessage(handler: (message: PrimaryToShard) => void): void;
  close(): void;
}

type Socket = WebSocket<Connection>;

export function runShard(init: ShardInit, channel: ShardChannel): void {
  new Shard(init, channel).start();
}

class Shard {
  private readonly config: Config['websocket'];
  private readonly log: Logger;
  private readonly table: ShardTable;
  private readonly counters: Float64Array;
  private readonly auth: Authenticator;
  private readonly limiter: RateLimiter;
  private readonly cross: CrossShard;
  private readonly app: TemplatedApp;
  private readonly sockets = new Set<Socket>();
  /** Authenticated connections by user and by session id, for the broker's deliveries. */
  private readonly byUser = new Map<string, Set<Socket>>();
  private readonly bySid = new Map<string, Socket>();
  private readonly toBroker: QueuedRingWriter;
  private readonly fromBroker: LinkReader;
  /** `data.type` values with a processor: pubs carrying one detour through the broker. */
  private processorTypes: Set<string>;
  private readonly adminReplies = new Map<number, (status: number, body: string) => void>();
  private adminSeq = 0;
  private listenSocket: us_listen_socket | null = null;
  private timers: NodeJS.Timeout[] = [];
  private stopping = false;
  private finished = false;
  /** 1 once the shard crashed: the primary restarts it. */
  private exitCode = 0;
  private msgSeq = 0;
  private sidSeq = 0;
  private readonly idPrefix: string;
  private readonly compressFrom: number;

  constructor(private readonly init: ShardInit, private readonly channel: ShardChannel) {
    this.config = init.config.websocket;
    this.log = createLogger(init.config.logging.level, { shard: init.shard });
    this.table = new ShardTable(init.table);
    this.counters = this.table.countersOf(init.shard);
    this.auth = new Authenticator(this.config.auth);
    this.limiter = new RateLimiter(this.config.limits.messages_per_second, this.config.limits.burst);
    this.idPrefix = `${init.instance}.${init.shard}.`;
    this.compressFrom = this.config.performance.enable_compression ? this.config.performance.compression_threshold : Infinity;
    this.cross = new CrossShard({
      self: init.shard,
      table: this.table,
      doorbells: init.doorbells,
      inbound: init.inbound,
      outbound: init.outbound,
      overflowLimitBytes: this.config.performance.ring_overflow_bytes,
      counters: this.counters,
      onPub: (topic, frame) => this.publishLocal(topic, frame),
      alsoDrain: (budget) => this.fromBroker.drain(budget),
    });
    this.toBroker = new QueuedRingWriter(init.toBroker, new DoorbellRinger(init.doorbells), init.shards);
    // Whatever waits here was meant for connections of this shard's previous incarnation.
    this.fromBroker = new LinkReader(init.fromBroker, (kind, fields) => this.onBrokerRecord(kind, fields), true);
    this.processorTypes = new Set(init.processorTypes);
    this.app = uWS.App();
  }

  start(): void {
    this.installCrashHandlers();
    this.channel.onMessage((message) => {
      if (message.type === 'shutdown') this.shutdown(message.graceMs, message.code, message.reason);
      else if (message.type === 'crash') setTimeout(() => { throw new Error(message.reason); });
      else if (message.type === 'stall') stall(message.ms);
      else if (message.type === 'processors') this.processorTypes = new Set(message.types);
    });
    this.table.setStatus(this.init.shard, ShardStatus.STARTING);
    const { server } = this.config;
    attachAdminRoutes(this.app, this.config.admin.token, {
      forward: (method, path, reply) => {
        const id = this.adminSeq++;
        this.adminReplies.set(id, reply);
        this.toBroker.write(encodeRecord(ToBroker.ADMIN, [id, method, path]));
      },
    });
    attachHttpRoutes(this.app, {
      table: this.table,
      version: this.init.version,
      startedAt: Date.now(),
      maxConnections: server.max_connections,
      metricsEnabled: this.config.monitoring.enable_metrics_collection,
      isStopping: () => this.stopping,
    });
    this.app.ws<Connection>(server.path, {
      // Frames between max_payload and twice that are read and refused with E_TOO_LARGE and
      // 1009; larger ones are cut by uWS before they are buffered (the client sees 1006).
      maxPayloadLength: server.max_payload * 2,
      // The slow-consumer sweep closes at max_backpressure with 1013. uWS's own limit sits
      // well above it, so the err and close frames still fit behind the backlog; a socket
      // that reaches it between sweeps is closed by uWS rather than silently skipped.
      maxBackpressure: server.max_backpressure * 4,
      closeOnBackpressureLimit: 1,
      // Idleness is judged by inbound traffic only (our sweep); uWS would count our own pings.
      idleTimeout: 0,
      sendPingsAutomatically: false,
      compression: this.config.performance.enable_compression ? uWS.SHARED_COMPRESSOR : uWS.DISABLED,
      upgrade: (res, req, context) => this.upgrade(res, req, context),
      open: (ws) => this.open(ws),
      message: (ws, message, isBinary) => this.message(ws, message, isBinary),
      pong: (ws) => {
        ws.getUserData().lastSeen = Date.now();
      },
      close: (ws) => this.close(ws),
    });
    this.app.listen(server.host, this.init.port, (listenSocket) => {
      if (!listenSocket) {
        this.log.error({ code: 'E_STARTUP', host: server.host, port: this.init.port }, 'cannot listen');
        this.channel.post({ type: 'listen-failed', host: server.host, port: this.init.port });
        this.channel.close();
        return;
      }
      this.listenSocket = listenSocket;
      const port = uWS.us_socket_local_port(listenSocket);
      this.cross.start();
      this.startTimers();
      this.table.setStatus(this.init.shard, ShardStatus.UP);
      this.log.info({ port }, 'shard started');
      this.channel.post({ type: 'listening', port });
    });
  }

  // --- connections -------------------------------------------------------------------------

  private upgrade(res: HttpResponse, req: import('uWebSockets.js').HttpRequest, context: import('uWebSockets.js').us_socket_context_t): void {
    const key = req.getHeader('sec-websocket-key');
    const offered = req.getHeader('sec-websocket-protocol');
    const extensions = req.getHeader('sec-websocket-extensions');
    const query = new URLSearchParams(req.getQuery() ?? '');
    if (this.stopping) return refuse(res, '503 Service Unavailable', 'E_OVERLOADED', 'server shutting down');
    const protocol = selectProtocol(offered);
    if (protocol === null) {
      return refuse(res, '400 Bad Request', 'E_BAD_FRAME', `unsupported subprotocol; this server speaks ${JSON_PROTOCOL}`);
    }
    if (!this.table.tryOpenConnection(this.init.shard, this.config.server.max_connections)) {
      this.counters[Counter.connections_rejected]!++;
      return refuse(res, '503 Service Unavailable', 'E_OVERLOADED', 'server at max_connections');
    }
    const token = query.get('token');
    const user = query.get('user');
    const accept = (identity: { user: string | null; groups: Connection['allowed']; weight?: number }): void => {
      const conn = newConnection(this.nextSid(), identity.user, identity.groups, this.config.limits.burst, Date.now());
      conn.weight = identity.weight ?? 0;
      res.upgrade(conn, key, protocol, extensions, context);
    };
    const reject = (reason: string): void => {
      this.table.closeConnection(this.init.shard);
      this.counters[Counter.errors_unauthorized]!++;
      refuse(res, '401 Unauthorized', 'E_UNAUTHORIZED', reason);
    };
    if (token) {
      let aborted = false;
      res.onAborted(() => {
        aborted = true;
        this.table.closeConnection(this.init.shard);
      });
      void this.auth.verify(token).then((result) => {
        if (aborted) return;
        res.cork(() => (result.ok ? accept(result.identity) : reject(result.reason)));
      });
      return;
    }
    if (user !== null) {
      const result = this.auth.anonymous(user);
      return result.ok ? accept({ user: result.identity.user, groups: null }) : reject(result.reason);
    }
    accept({ user: null, groups: null }); // identity comes with the first frame (`auth`)
  }

  private open(ws: Socket): void {
    const conn = ws.getUserData();
    this.sockets.add(ws);
    this.counters[Counter.connections_opened]!++;
    if (this.stopping) {
      ws.end(1001, 'server shutting down');
      return;
    }
    if (conn.user !== null) return this.announce(ws, conn);
    conn.authTimer = setTimeout(() => {
      if (conn.closed || conn.user !== null) return;
      this.fail(ws, conn, 'E_UNAUTHORIZED', `no auth frame within ${this.config.server.auth_timeout} s`, undefined, true);
    }, this.config.server.auth_timeout * 1000);
  }

  private close(ws: Socket): void {
    const conn = ws.getUserData();
    conn.closed = true;
    if (conn.authTimer) clearTimeout(conn.authTimer);
    this.sockets.delete(ws);
    if (conn.announced) {
      this.bySid.delete(conn.sid);
      const mine = this.byUser.get(conn.user!);
      mine?.delete(ws);
      if (mine && mine.size === 0) this.byUser.delete(conn.user!);
      this.toBroker.write(encodeRecord(ToBroker.PRESENCE, [conn.sid, conn.user, 0]));
    }
    this.table.closeConnection(this.init.shard);
    this.counters[Counter.connections_closed]!++;
    if (this.stopping && this.sockets.size === 0) this.finish();
  }

  // --- frames ------------------------------------------------------------------------------

  private message(ws: Socket, message: ArrayBuffer, isBinary: boolean): void {
    const conn = ws.getUserData();
    const now = Date.now();
    conn.lastSeen = now;
    this.counters[Counter.frames_in]!++;
    this.counters[Counter.bytes_in]! += message.byteLength;
    if (message.byteLength > this.config.server.max_payload) {
      return this.fail(ws, conn, 'E_TOO_LARGE', `frame of ${message.byteLength} bytes is over max_payload (${this.config.server.max_payload})`, undefined, true);
    }
    if (!this.limiter.take(conn, now)) {
      const close = ++conn.rateViolations >= this.config.limits.rate_violations_before_close;
      return this.fail(ws, conn, 'E_RATE_LIMITED', `over ${this.config.limits.messages_per_second} frames per second`, undefined, close);
    }
    const frame = decodeJson(message, isBinary);
    if (frame.op === 'err') {
      const close = ++conn.badFrames >= this.config.limits.bad_frames_before_close;
      this.counters[Counter.errors_bad_frame]!++;
      ws.send(encodeFrameError(frame));
      if (close) ws.end(ErrorCodes.E_BAD_FRAME.close, 'too many bad frames');
      return;
    }
    try {
      this.handle(ws, conn, frame);
    } catch (err) {
      this.counters[Counter.errors_internal]!++;
      this.log.error({ code: 'E_INTERNAL', err, op: frame.op }, 'frame handler failed');
      ws.send(encodeError('E_INTERNAL', 'internal error handling this frame', 'ref' in frame ? frame.ref : undefined));
    }
  }

  private handle(ws: Socket, conn: Connection, frame: ClientFrame): void {
    if (conn.user === null) {
      if (frame.op !== 'auth') return this.fail(ws, conn, 'E_UNAUTHORIZED', 'the first frame must be auth', undefined, true);
      return this.authenticate(ws, conn, frame.token);
    }
    switch (frame.op) {
      case 'pub':
        return this.pub(ws, conn, frame.group, frame.data, frame.pri, frame.ref);
      case 'send':
        return this.sendDirect(ws, conn, frame.to, frame.data, frame.pri, frame.ref, frame.at);
      case 'any':
        return this.sendAny(ws, conn, frame.group, frame.data, frame.pri, frame.ref, frame.strategy);
      case 'ack':
        this.toBroker.write(encodeRecord(ToBroker.ACK, [conn.sid, conn.user, frame.id]));
        return;
      case 'join':
        return this.join(ws, conn, frame.group, frame.ref);
      case 'leave':
        if (conn.groups.delete(frame.group)) {
          ws.unsubscribe(frame.group);
          this.toBroker.write(encodeRecord(ToBroker.MEMBERSHIP, [conn.sid, frame.group, 0, 0]));
        }
        ws.send(encodeLeft(frame.group, frame.ref));
        return;
      case 'ping':
        ws.send(encodePong(frame.t, Date.now()));
        return;
      case 'auth':
        this.counters[Counter.errors_bad_frame]!++;
        ws.send(encodeError('E_BAD_FRAME', 'already authenticated'));
        return;
    }
  }

  private authenticate(ws: Socket, conn: Connection, token: string): void {
    void this.auth.verify(token).then((result) => {
      if (conn.closed) return;
      ws.cork(() => {
        if (!result.ok) return this.fail(ws, conn, 'E_UNAUTHORIZED', result.reason, undefined, true);
        if (conn.authTimer) clearTimeout(conn.authTimer);
        conn.authTimer = null;
        conn.user = result.identity.user;
        conn.allowed = result.identity.groups;
        conn.weight = result.identity.weight;
        this.announce(ws, conn);
      });
    });
  }

  private join(ws: Socket, conn: Connection, group: string, ref: string | undefined): void {
    if (conn.allowed !== null && !conn.allowed.allows(group)) return this.fail(ws, conn, 'E_FORBIDDEN', `not allowed to join ${group}`, ref);
    if (!conn.groups.has(group)) {
      if (conn.groups.size >= this.config.limits.max_groups_per_connection) {
        return this.fail(ws, conn, 'E_FORBIDDEN', `at most ${this.config.limits.max_groups_per_connection} groups per connection`, ref);
      }
      conn.groups.add(group);
      ws.subscribe(group);
      this.toBroker.write(encodeRecord(ToBroker.MEMBERSHIP, [conn.sid, group, 1, conn.weight]));
    }
    ws.send(encodeJoined(group, ref));
  }

  private pub(ws: Socket, conn: Connection, group: string, data: unknown, pri: number, ref: string | undefined): void {
    if (this.config.groups.require_membership && !conn.groups.has(group)) {
      return this.fail(ws, conn, 'E_NOT_MEMBER', `join ${group} before publishing to it`, ref);
    }
    if (conn.allowed !== null && !conn.allowed.allows(group)) return this.fail(ws, conn, 'E_FORBIDDEN', `not allowed to publish to ${group}`, ref);
    if (this.processorTypes.size > 0 && this.detourPub(conn, group, data, pri, ref)) return;
    if (!this.cross.canAccept()) {
      this.counters[Counter.ring_overloaded]!++;
      return this.fail(ws, conn, 'E_OVERLOADED', 'cross-shard rings are full; retry shortly', ref);
    }
    const id = this.idPrefix + (this.msgSeq++).toString(36);
    const frame = Buffer.from(encodeGroupMsg(id, conn.user!, group, data, pri, Date.now()));
    this.counters[Counter.pubs]!++;
    this.publishLocal(group, frame);
    this.cross.forwardPub(group, frame);
    if (ref !== undefined) ws.send(encodeAck(ref, id));
  }

  /** A pub whose data.type has a processor goes to the broker, which runs it and publishes. */
  private detourPub(conn: Connection, group: string, data: unknown, pri: number, ref: string | undefined): boolean {
    const type = typeOfData(data);
    if (type === null || !this.processorTypes.has(type)) return false;
    this.counters[Counter.pubs]!++;
    this.toBroker.write(encodeRecord(ToBroker.PUB, [conn.sid, ref ?? null, conn.user, group, JSON.stringify(data), pri, type]));
    return true;
  }

  // --- reliable messages (the broker in the primary thread stores and routes them) ---------

  /** Tells the broker this connection is online; it answers with the `welcome` (and pending count). */
  private announce(ws: Socket, conn: Connection): void {
    const user = conn.user!;
    conn.announced = true;
    this.bySid.set(conn.sid, ws);
    let mine = this.byUser.get(user);
    if (!mine) this.byUser.set(user, (mine = new Set()));
    mine.add(ws);
    this.toBroker.write(encodeRecord(ToBroker.PRESENCE, [conn.sid, user, 1]));
  }

  private brokerBusy(ws: Socket, conn: Connection, ref: string | undefined): boolean {
    if (this.toBroker.backlog <= this.config.performance.ring_overflow_bytes) return false;
    this.fail(ws, conn, 'E_OVERLOADED', 'the message broker is behind; retry shortly', ref);
    return true;
  }

  private sendDirect(ws: Socket, conn: Connection, to: string, data: unknown, pri: number, ref: string | undefined, at: number | undefined): void {
    if (this.brokerBusy(ws, conn, ref)) return;
    this.toBroker.write(encodeRecord(ToBroker.SEND, [conn.sid, ref ?? null, conn.user, to, JSON.stringify(data), pri, at ?? 0, this.processorType(data)]));
  }

  private sendAny(ws: Socket, conn: Connection, group: string, data: unknown, pri: number, ref: string | undefined, strategy: string | undefined): void {
    if (this.config.groups.require_membership && !conn.groups.has(group)) {
      return this.fail(ws, conn, 'E_NOT_MEMBER', `join ${group} before sending to it`, ref);
    }
    if (conn.allowed !== null && !conn.allowed.allows(group)) return this.fail(ws, conn, 'E_FORBIDDEN', `not allowed to send to ${group}`, ref);
    if (this.brokerBusy(ws, conn, ref)) return;
    this.toBroker.write(encodeRecord(ToBroker.ANY, [conn.sid, ref ?? null, conn.user, group, JSON.stringify(data), pri, strategy ?? null, this.processorType(data)]));
  }

  private processorType(data: unknown): string | null {
    if (this.processorTypes.size === 0) return null;
    const type = typeOfData(data);
    return type !== null && this.processorTypes.has(type) ? type : null;
  }

  private onBrokerRecord(kind: number, f: unknown[]): void {
    switch (kind) {
      case ToShard.DELIVER_USER: {
        const sockets = this.byUser.get(f[0] as string);
        if (!sockets) return;
        const frame = f[1] as string;
        for (const ws of sockets) ws.send(frame);
        this.counters[Counter.deliveries]! += sockets.size;
        return;
      }
      case ToShard.DELIVER_SID:
        if (this.sendTo(f[0] as string, f[1] as string)) this.counters[Counter.deliveries]!++;
        return;
      case ToShard.SENDER_ACK:
        this.sendTo(f[0] as string, encodeAck((f[1] as string | null) ?? undefined, f[2] as string));
        return;
      case ToShard.WELCOME: {
        const ws = this.bySid.get(f[0] as string);
        if (ws) ws.send(encodeWelcome(ws.getUserData().user!, f[0] as string, this.init.shard, f[1] as number));
        return;
      }
      case ToShard.ERROR: {
        const ws = this.bySid.get(f[0] as string);
        if (ws) this.fail(ws, ws.getUserData(), f[1] as ErrorCode, f[2] as string, (f[3] as string | null) ?? undefined);
        return;
      }
      case ToShard.GROUP_PUB:
        this.publishLocal(f[0] as string, Buffer.from(f[1] as string));
        return;
      case ToShard.ADMIN_REPLY: {
        const reply = this.adminReplies.get(f[0] as number);
        this.adminReplies.delete(f[0] as number);
        reply?.(f[1] as number, f[2] as string);
        return;
      }
    }
  }

  private sendTo(sid: string, frame: string): boolean {
    const ws = this.bySid.get(sid);
    if (!ws) return false;
    ws.send(frame);
    return true;
  }

  private publishLocal(topic: string | Uint8Array, frame: Uint8Array): void {
    const subscribers = this.app.numSubscribers(topic);
    if (subscribers === 0) return;
    this.app.publish(topic, frame, false, frame.byteLength >= this.compressFrom);
    this.counters[Counter.deliveries]! += subscribers;
  }

  /** Sends an `err` frame and, when `close`, closes with the code's close code. */
  private fail(ws: Socket, conn: Connection, code: ErrorCode, message: string, ref: string | undefined, close = false): void {
    this.counters[errorCounter[code]]!++;
    if (conn.closed) return;
    ws.send(encodeError(code, message, ref));
    if (close) ws.end(ErrorCodes[code].close, message.slice(0, 120));
  }

  private nextSid(): string {
    return this.idPrefix + (this.sidSeq++).toString(36);
  }

  // --- housekeeping ------------------------------------------------------------------------

  private startTimers(): void {
    this.timers.push(setInterval(() => this.sweep(), this.config.server.backpressure_check_interval * 1000));
  }

  /**
   * Closes slow consumers (1013) and connections silent past idle_timeout, and pings each
   * connection once per ping_interval. Pings are due per connection, first at a random point
   * of its first interval, so connections that arrived together are not all pinged (and do
   * not all answer) in the same instant: a burst of 2,000 pings showed as a latency spike.
   */
  private sweep(): void {
    const { max_backpressure: limit, idle_timeout, ping_interval } = this.config.server;
    const idleMs = idle_timeout * 1000;
    const pingMs = ping_interval * 1000;
    const now = Date.now();
    for (const ws of this.sockets) {
      const conn = ws.getUserData();
      if (conn.closed) continue;
      if (ws.getBufferedAmount() > limit) {
        this.counters[Counter.slow_consumers_closed]!++;
        this.fail(ws, conn, 'E_OVERLOADED', `slow consumer: over ${limit} bytes waiting to be sent`, undefined, true);
      } else if (idleMs > 0 && now - conn.lastSeen > idleMs) {
        ws.end(IDLE_CLOSE, 'idle timeout');
      } else if (pingMs > 0 && now >= conn.nextPingAt) {
        if (conn.nextPingAt !== 0) ws.ping();
        conn.nextPingAt = now + (conn.nextPingAt === 0 ? Math.random() * pingMs : pingMs);
      }
    }
  }

  // --- stopping ----------------------------------------------------------------------------

  private shutdown(graceMs: number, code: number, reason: string): void {
    if (this.stopping) return;
    this.stopping = true;
    this.table.setStatus(this.init.shard, ShardStatus.STOPPING);
    this.stopAccepting();
    for (const ws of this.sockets) ws.end(code, reason);
    if (this.sockets.size === 0) return this.finish();
    // Clients that do not answer the close handshake in time are cut.
    this.timers.push(setTimeout(() => this.forceClose(), graceMs));
  }

  private stopAccepting(): void {
    if (this.listenSocket) uWS.us_listen_socket_close(this.listenSocket);
    this.listenSocket = null;
    this.cross.stop();
    this.toBroker.stop();
    for (const timer of this.timers) clearTimeout(timer);
    this.timers = [];
  }

  private forceClose(): void {
    for (const ws of [...this.sockets]) ws.close();
    this.finish();
  }

  /**
   * Every socket is closed. The thread now ends on its own once uWS has released the last
   * socket: process.exit() here could tear the loop down under a socket uWS is still
   * closing (a segfault in us_internal_dispatch_ready_poll), and exiting with sockets open
   * aborts the whole process.
   */
  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers = [];
    this.table.setStatus(this.init.shard, ShardStatus.DOWN);
    this.log.info({ exitCode: this.exitCode }, 'shard stopped');
    this.channel.post({ type: 'stopped' });
    this.channel.close();
    process.exitCode = this.exitCode;
  }

  /**
   * A bug must not take the process down: close this shard's sockets (an exit with uWS
   * sockets open would abort every thread), exit 1, and let the primary start a new one.
   */
  private installCrashHandlers(): void {
    const crash = (err: unknown): void => {
      const error = err instanceof Error ? err : new Error(String(err));
      this.log.fatal({ code: 'E_INTERNAL', err: error }, 'shard crashed');
      this.channel.post({ type: 'fatal', message: error.message, stack: error.stack });
      this.exitCode = 1;
      if (this.stopping) return;
      this.stopping = true;
      this.table.setStatus(this.init.shard, ShardStatus.STOPPING);
      this.stopAccepting();
      for (const ws of this.sockets) ws.end(CloseCodes.SERVICE_RESTART, 'shard restarting');
      if (this.sockets.size === 0) return this.finish();
      this.timers.push(setTimeout(() => this.forceClose(), CRASH_GRACE_MS));
    };
    process.on('uncaughtException', crash);
    process.on('unhandledRejection', crash);
  }
}

/** How long a crashed shard waits for close handshakes before cutting its sockets. */
const CRASH_GRACE_MS = 200;

const errorCounter: Record<ErrorCode, number> = {
  E_BAD_FRAME: Counter.errors_bad_frame,
  E_TOO_LARGE: Counter.errors_too_large,
  E_UNAUTHORIZED: Counter.errors_unauthorized,
  E_FORBIDDEN: Counter.errors_forbidden,
  E_RATE_LIMITED: Counter.errors_rate_limited,
  E_NOT_MEMBER: Counter.errors_not_member,
  E_OVERLOADED: Counter.errors_overloaded,
  E_UNKNOWN_ID: Counter.errors_bad_frame,
  E_QUEUE_FULL: Counter.errors_overloaded,
  E_INTERNAL: Counter.errors_internal,
  E_CONFIG: Counter.errors_internal,
  E_STARTUP: Counter.errors_internal,
};

/** Fault injection: keeps the thread busy, as a long GC pause or a hot loop would. */
function stall(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until);
}

/** The subprotocol to answer with: '' when none was offered, null when none is supported. */
function selectProtocol(offered: string): string | null {
  if (offered === '') return '';
  for (const name of offered.split(',')) if (name.trim() === JSON_PROTOCOL) return JSON_PROTOCOL;
  return null;
}

function refuse(res: HttpResponse, status: string, code: ErrorCode, message: string): void {
  res.writeStatus(status).writeHeader('content-type', 'application/json').end(JSON.stringify({ code, message }));
}

/**
 * One acceptor thread: a uWS App on the shared port (SO_REUSEPORT), owning its sockets
 * outright. Groups are uWS topics; a `pub` is encoded once, published locally and its bytes
 * forwarded to the other shards over the rings.
 */
import { Authenticator } from '../auth/identity.js';
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
    });
    this.app = uWS.App();
  }

  start(): void {
    this.installCrashHandlers();
    this.channel.onMessage((message) => {
      if (message.type === 'shutdown') this.shutdown(message.graceMs, message.code, message.reason);
      else if (message.type === 'crash') setTimeout(() => { throw new Error(message.reason); });
      else if (message.type === 'stall') stall(message.ms);
    });
    this.table.setStatus(this.init.shard, ShardStatus.STARTING);
    const { server } = this.config;
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
    const accept = (identity: { user: string | null; groups: Connection['allowed'] }): void => {
      const conn = newConnection(this.nextSid(), identity.user, identity.groups, this.config.limits.burst, Date.now());
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
        res.cork(() => (result.ok ? accept({ user: result.identity.user, groups: result.identity.groups }) : reject(result.reason)));
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
    if (conn.user !== null) {
      ws.send(encodeWelcome(conn.user, conn.sid, this.init.shard, 0));
      return;
    }
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
      case 'join':
        return this.join(ws, conn, frame.group, frame.ref);
      case 'leave':
        if (conn.groups.delete(frame.group)) ws.unsubscribe(frame.group);
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
        ws.send(encodeWelcome(conn.user, conn.sid, this.init.shard, 0));
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
    }
    ws.send(encodeJoined(group, ref));
  }

  private pub(ws: Socket, conn: Connection, group: string, data: unknown, pri: number, ref: string | undefined): void {
    if (this.config.groups.require_membership && !conn.groups.has(group)) {
      return this.fail(ws, conn, 'E_NOT_MEMBER', `join ${group} before publishing to it`, ref);
    }
    if (conn.allowed !== null && !conn.allowed.allows(group)) return this.fail(ws, conn, 'E_FORBIDDEN', `not allowed to publish to ${group}`, ref);
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
    const { server } = this.config;
    this.timers.push(setInterval(() => this.sweep(), server.backpressure_check_interval * 1000));
    if (server.ping_interval > 0) {
      this.timers.push(setInterval(() => {
        for (const ws of this.sockets) ws.ping();
      }, server.ping_interval * 1000));
    }
  }

  /** Closes slow consumers (1013) and connections silent past idle_timeout. */
  private sweep(): void {
    const limit = this.config.server.max_backpressure;
    const idleMs = this.config.server.idle_timeout * 1000;
    const now = Date.now();
    for (const ws of this.sockets) {
      const conn = ws.getUserData();
      if (conn.closed) continue;
      if (ws.getBufferedAmount() > limit) {
        this.counters[Counter.slow_consumers_closed]!++;
        this.fail(ws, conn, 'E_OVERLOADED', `slow consumer: over ${limit} bytes waiting to be sent`, undefined, true);
      } else if (idleMs > 0 && now - conn.lastSeen > idleMs) {
        ws.end(IDLE_CLOSE, 'idle timeout');
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

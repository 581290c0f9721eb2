/**
 * Who gets a connection, and as whom: the HTTP upgrade (shutdown, subprotocol, per-address
 * limits, connection cap, token or anonymous identity), the `auth` first frame of a connection
 * that came without one, later `auth` frames that refresh its token, and the announcement to
 * the broker once the user is known. Also where sockets are registered on open and released
 * on close.
 *
 * A connection's identity is set exactly once: frames behind its `auth` frame wait for the
 * verdict (dispatch.ts), and a later `auth` frame may only extend the same user's expiry.
 */
import { ClientAddresses, addressGroup } from './client-address.js';
import type { Authenticator, Identity, IdentityResult } from '../auth/identity.js';
import { CloseCodes, type ErrorCode } from '../protocol/errors.js';
import { JSON_PROTOCOL } from '../protocol/json-codec.js';
import { MSGPACK_PROTOCOL } from '../protocol/msgpack-codec.js';
import { MSGPACK_FRAMES } from '../protocol/server-frames.js';
import { type ShardTable } from '../shared/shard-table.js';
import { Counter } from '../shared/shard-counters.js';
import type { Logger } from '../util/logger.js';
import { watch } from '../util/http-answer.js';
import { headerList, type HttpRequest, type HttpResponse, type us_socket_context_t } from '../util/uws.js';
import type { Backpressure } from './backpressure.js';
import type { BrokerLink } from './broker-link.js';
import { connOf, newConnection, type Connection, type Socket, type SocketData } from './connection.js';
import type { Fail } from './fail.js';
import { sendError } from './http.js';
import type { Out } from './out.js';
import { IpLimiter, type IpLimitOptions, type IpVerdict } from './ip-limits.js';
import type { ConnectionRegistry } from './registry.js';
import type { InterestRow } from '../shared/interest-table.js';

export interface AdmissionOptions {
  shard: number;
  table: ShardTable;
  counters: Float64Array;
  auth: Authenticator;
  maxConnections: number;
  /** Seconds a connection without a token has to send its `auth` frame. */
  authTimeout: number;
  /** A new connection's rate-limit bucket starts full. */
  burst: number;
  /** Session ids are this prefix plus a per-shard sequence. */
  sidPrefix: string;
  /** This shard's share of the per-address limits (ip-limits.ts). */
  ipLimits: IpLimitOptions;
  /** websocket.server.trusted_proxies: whose X-Forwarded-For names the client (client-address.ts). */
  trustedProxies: readonly string[];
  /** websocket.limits.ipv6_prefix_length: IPv6 clients count under this prefix of their address. */
  ipv6PrefixLength: number;
  registry: ConnectionRegistry;
  /** This shard's row of the interest table: a closed member's groups are counted out. */
  interest: InterestRow;
  link: Pick<BrokerLink, 'presence'>;
  /**
   * The ring to the broker's back-pressure: a new connection's announcement is its first record
   * of its allowance (and one of its address's), so it is refused (E_OVERLOADED, 1013) only past
   * twice the bound, as everyone's records are, or once its address spent its own (backpressure.ts).
   */
  brokerBackpressure: Pick<Backpressure, 'refuses'>;
  fail: Fail;
  out: Pick<Out, 'send'>;
  log: Logger;
  isStopping(): boolean;
}

/** How often the per-address table drops idle addresses (it also does when full). */
const ADDRESS_SWEEP_MS = 10_000;

export class Admission {
  private sidSeq = 0;
  private readonly addresses: IpLimiter;
  /** Who a request comes from (behind a trusted proxy, the client it names): /admin asks too. */
  readonly clients: ClientAddresses;
  private addressesSweptAt = 0;

  constructor(private readonly options: AdmissionOptions) {
    this.addresses = new IpLimiter(options.ipLimits);
    this.clients = new ClientAddresses(options.trustedProxies);
  }

  upgrade(res: HttpResponse, req: HttpRequest, context: us_socket_context_t): void {
    const { shard, table, counters, auth, burst, authTimeout } = this.options;
    // uWS's request and response are readable only until this handler returns: read all first.
    const key = req.getHeader('sec-websocket-key');
    // A client may offer its subprotocols and extensions on several lines (RFC 6455 11.3.4).
    const offered = headerList(req, 'sec-websocket-protocol');
    const extensions = headerList(req, 'sec-websocket-extensions');
    const query = new URLSearchParams(req.getQuery() ?? '');
    const ip = addressGroup(this.clients.ofRequest(req, res), this.options.ipv6PrefixLength);
    if (this.options.isStopping()) {
      counters[Counter.refused_stopping]!++;
      return refuse(res, '503 Service Unavailable', 'E_OVERLOADED', 'server shutting down');
    }
    const protocol = selectProtocol(offered);
    if (protocol === null) {
      counters[Counter.refused_protocol]!++;
      return refuse(res, '400 Bad Request', 'E_BAD_FRAME', `unsupported subprotocol; this server speaks ${JSON_PROTOCOL} and ${MSGPACK_PROTOCOL}`);
    }
    if (auth.acceptsNobody) {
      // Not only a `?token=`: a client that would send an `auth` frame is refused too, instead of
      // holding a place until its frame is refused.
      counters[Counter.refused_unauthorized]!++;
      return refuse(res, '401 Unauthorized', 'E_UNAUTHORIZED', 'no client is accepted: no websocket.auth.secret is configured and anonymous connections are off');
    }
    const token = query.get('token');
    const user = query.get('user');
    // Without credentials the socket waits for its `auth` frame, holding one of its address's
    // unauthenticated places until it authenticates or closes.
    const waitsForAuth = !token && user === null;
    const verdict = this.addresses.admit(ip, waitsForAuth, Date.now());
    if (verdict !== 'ok') return this.refuseAddress(res, verdict);
    if (!table.tryOpenConnection(shard, this.options.maxConnections)) {
      this.addresses.cancel(ip, waitsForAuth);
      counters[Counter.connections_rejected]!++;
      return refuse(res, '503 Service Unavailable', 'E_OVERLOADED', 'server at max_connections');
    }
    const accept = (identity: Identity | null): void => {
      const now = Date.now();
      const conn =
        identity === null
          ? newConnection(this.nextSid(), null, null, burst, now, now + authTimeout * 1000)
          : newConnection(this.nextSid(), identity.user, identity.groups, burst, now, identity.expiresAt);
      conn.weight = identity?.weight ?? 0;
      conn.tokenKey = identity?.tokenKey ?? null;
      if (protocol === MSGPACK_PROTOCOL) conn.frames = MSGPACK_FRAMES;
      conn.address = ip;
      conn.holdsUnauthenticatedPlace = identity === null;
      res.upgrade<SocketData>({ conn }, key, protocol, extensions, context);
    };
    const reject = (reason: string): void => {
      table.closeConnection(shard);
      this.addresses.cancel(ip, waitsForAuth);
      counters[Counter.errors_unauthorized]!++;
      counters[Counter.refused_unauthorized]!++;
      refuse(res, '401 Unauthorized', 'E_UNAUTHORIZED', reason);
    };
    if (token) {
      // Checked here and now: an upgrade made later, from a promise, is what uWS's cork() gets
      // wrong now and then (src/auth/jwt.ts).
      let result: IdentityResult;
      try {
        result = auth.verify(token);
      } catch (err) {
        this.broke(err);
        table.closeConnection(shard);
        this.addresses.cancel(ip, waitsForAuth);
        return refuse(res, '500 Internal Server Error', 'E_INTERNAL', 'the token could not be checked');
      }
      return result.ok ? accept(result.identity) : reject(result.reason);
    }
    if (user !== null) {
      const result = auth.anonymous(user);
      return result.ok ? accept(result.identity) : reject(result.reason);
    }
    accept(null); // identity comes with the first frame (`auth`)
  }

  /**
   * Registers the socket and, when its identity is known, announces it. One that waits for its
   * `auth` frame is closed by the sweep at `expiresAt` (auth_timeout).
   */
  open(ws: Socket): void {
    const conn = connOf(ws);
    this.options.registry.add(ws, conn);
    this.options.counters[Counter.connections_opened]!++;
    if (conn.frames.binary) this.options.counters[Counter.binary_opened]!++;
    if (this.options.isStopping()) {
      ws.end(CloseCodes.GOING_AWAY, 'server shutting down');
      return;
    }
    if (conn.user !== null) this.announce(ws, conn);
  }

  close(ws: Socket): void {
    const conn = connOf(ws);
    conn.closed = true;
    for (const group of conn.groups) this.options.interest.left(group);
    this.releaseAddress(conn);
    this.addresses.closed(conn.address);
    this.options.registry.remove(ws, conn);
    if (conn.announced) this.options.link.presence(conn, 0);
    this.options.table.closeConnection(this.options.shard);
    this.options.counters[Counter.connections_closed]!++;
    if (conn.frames.binary) this.options.counters[Counter.binary_closed]!++;
  }

  /** The `auth` frame of a connection that came without a token: its identity, once. */
  authenticate(ws: Socket, conn: Connection, token: string, ref: string | undefined): void {
    this.check(ws, conn, token, ref, (identity) => {
      conn.user = identity.user;
      conn.allowed = identity.groups;
      conn.weight = identity.weight;
      conn.expiresAt = identity.expiresAt;
      conn.tokenKey = identity.tokenKey;
      this.releaseAddress(conn);
      this.announce(ws, conn);
    });
  }

  /**
   * A later `auth` frame. A fresh token of the same user moves the connection's expiry (its
   * groups and weight stay those it was admitted with) and is answered `ack`; another user's
   * token closes the connection. Frames behind it are handled meanwhile, as the user it is.
   */
  refresh(ws: Socket, conn: Connection, token: string, ref: string | undefined): void {
    this.check(ws, conn, token, ref, (identity) => {
      if (identity.user !== conn.user) {
        return this.options.fail(ws, conn, 'E_UNAUTHORIZED', `this connection is ${conn.user}'s; another user needs a connection of their own`, ref, true);
      }
      // The same token again: max_lifetime counts on from when it was first given, not from now.
      if (identity.tokenKey === null || identity.tokenKey !== conn.tokenKey) conn.expiresAt = identity.expiresAt;
      conn.tokenKey = identity.tokenKey;
      this.options.out.send(ws, conn, conn.frames.authAck(ref, conn.expiresAt));
    });
  }

  /** Drops idle addresses from the per-address table now and then (the sweep timer calls it). */
  sweepAddresses(now: number): void {
    if (now - this.addressesSweptAt < ADDRESS_SWEEP_MS) return;
    this.addressesSweptAt = now;
    this.addresses.sweep(now);
  }

  /** Checks `token` for this open connection: a bad one closes it with 4001, a check that breaks with 1011. */
  private check(ws: Socket, conn: Connection, token: string, ref: string | undefined, onIdentity: (identity: Identity) => void): void {
    const { fail } = this.options;
    let result: IdentityResult;
    try {
      result = this.options.auth.verify(token);
    } catch (err) {
      this.broke(err);
      fail(ws, conn, 'E_INTERNAL', 'the token could not be checked', ref);
      if (!conn.closed) ws.end(CloseCodes.INTERNAL_ERROR, 'the token could not be checked');
      return;
    }
    if (result.ok) onIdentity(result.identity);
    else fail(ws, conn, 'E_UNAUTHORIZED', result.reason, ref, true);
  }

  /** A token check that threw (a bug, not a bad token): logged; the caller fails that one connection. */
  private broke(err: unknown): void {
    this.options.log.error({ code: 'E_INTERNAL', err }, 'token check failed');
  }

  /** Tells the broker this connection is online; it answers with the `welcome` (and pending count). */
  private announce(ws: Socket, conn: Connection): void {
    // Not announced, so its close writes nothing either: reconnect churn cannot queue PRESENCE records without bound.
    if (this.options.brokerBackpressure.refuses(conn)) {
      return this.options.fail(ws, conn, 'E_OVERLOADED', 'the message broker is behind; reconnect shortly', undefined, true);
    }
    this.options.registry.announce(ws, conn);
    this.options.link.presence(conn, 1);
  }

  private releaseAddress(conn: Connection): void {
    if (!conn.holdsUnauthenticatedPlace) return;
    this.addresses.authenticated(conn.address);
    conn.holdsUnauthenticatedPlace = false;
  }

  /**
   * Whether an HTTP request other than an upgrade may be answered: its address's share of
   * http_requests_per_ip. A refused one is answered here (429, or 503 with the table full).
   */
  request(res: HttpResponse, req: HttpRequest): boolean {
    if (this.options.ipLimits.requestsPerSecond === 0) return true;
    const ip = addressGroup(this.clients.ofRequest(req, res), this.options.ipv6PrefixLength);
    const verdict = this.addresses.request(ip, Date.now());
    if (verdict === 'ok') return true;
    watch(res, req);
    const { counters } = this.options;
    if (verdict === 'too_fast') {
      counters[Counter.http_refused_rate]!++;
      sendError(res, 'rate_limited', 'too many HTTP requests from this address; retry shortly', '1');
    } else {
      counters[Counter.http_refused_table_full]!++;
      sendError(res, 'unavailable', 'too many client addresses at once; retry shortly', '1');
    }
    return false;
  }

  private refuseAddress(res: HttpResponse, verdict: Exclude<IpVerdict, 'ok'>): void {
    const { counters } = this.options;
    switch (verdict) {
      case 'too_fast':
        counters[Counter.ip_refused_rate]!++;
        return refuse(res, '429 Too Many Requests', 'E_RATE_LIMITED', 'too many connection attempts from this address; retry shortly', '1');
      case 'too_many_unauthenticated':
        counters[Counter.ip_refused_unauthenticated]!++;
        return refuse(res, '429 Too Many Requests', 'E_RATE_LIMITED', 'too many connections from this address are waiting to authenticate', '1');
      case 'too_many_connections':
        counters[Counter.ip_refused_connections]!++;
        return refuse(res, '429 Too Many Requests', 'E_RATE_LIMITED', 'too many connections from this address are open; close one first', '5');
      case 'table_full':
        // Not this address's fault: the server tracks as many addresses as it will.
        counters[Counter.ip_refused_table_full]!++;
        return refuse(res, '503 Service Unavailable', 'E_OVERLOADED', 'too many client addresses at once; retry shortly', '1');
    }
  }

  private nextSid(): string {
    return this.options.sidPrefix + (this.sidSeq++).toString(36);
  }
}

/**
 * The subprotocol to answer with: the first of the client's that this server speaks (a client
 * lists them in its order of preference), '' when none was offered (JSON), null when none is supported.
 */
export function selectProtocol(offered: string): string | null {
  if (offered === '') return '';
  for (const name of offered.split(',')) {
    const trimmed = name.trim();
    if (trimmed === JSON_PROTOCOL || trimmed === MSGPACK_PROTOCOL) return trimmed;
  }
  return null;
}

function refuse(res: HttpResponse, status: string, code: ErrorCode, message: string, retryAfter?: string): void {
  res.writeStatus(status).writeHeader('content-type', 'application/json');
  if (retryAfter !== undefined) res.writeHeader('retry-after', retryAfter);
  res.end(JSON.stringify({ code, message }));
}

/**
 * Who gets a connection, and as whom: the HTTP upgrade (shutdown, subprotocol, connection
 * cap, token or anonymous identity), the `auth` first frame of a connection that came without
 * one, and the announcement to the broker once the user is known. Also where sockets are
 * registered on open and released on close.
 */
import type { Authenticator, GroupMatcher } from '../auth/identity.js';
import { CloseCodes, type ErrorCode } from '../protocol/errors.js';
import { JSON_PROTOCOL } from '../protocol/json-codec.js';
import { Counter, type ShardTable } from '../shared/shard-table.js';
import type { HttpRequest, HttpResponse, us_socket_context_t } from '../util/uws.js';
import type { BrokerLink } from './broker-link.js';
import { newConnection, type Connection, type Socket } from './connection.js';
import type { Fail } from './fail.js';
import type { ConnectionRegistry } from './registry.js';

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
  idPrefix: string;
  registry: ConnectionRegistry;
  link: Pick<BrokerLink, 'presence'>;
  fail: Fail;
  isStopping(): boolean;
}

interface Admitted {
  user: string | null;
  groups: GroupMatcher | null;
  weight?: number;
}

export class Admission {
  private sidSeq = 0;

  constructor(private readonly options: AdmissionOptions) {}

  upgrade(res: HttpResponse, req: HttpRequest, context: us_socket_context_t): void {
    const { shard, table, counters, auth } = this.options;
    // uWS's request object is valid only until this handler returns: read it all first.
    const key = req.getHeader('sec-websocket-key');
    const offered = req.getHeader('sec-websocket-protocol');
    const extensions = req.getHeader('sec-websocket-extensions');
    const query = new URLSearchParams(req.getQuery() ?? '');
    if (this.options.isStopping()) {
      counters[Counter.refused_stopping]!++;
      return refuse(res, '503 Service Unavailable', 'E_OVERLOADED', 'server shutting down');
    }
    const protocol = selectProtocol(offered);
    if (protocol === null) {
      counters[Counter.refused_protocol]!++;
      return refuse(res, '400 Bad Request', 'E_BAD_FRAME', `unsupported subprotocol; this server speaks ${JSON_PROTOCOL}`);
    }
    if (!table.tryOpenConnection(shard, this.options.maxConnections)) {
      counters[Counter.connections_rejected]!++;
      return refuse(res, '503 Service Unavailable', 'E_OVERLOADED', 'server at max_connections');
    }
    const token = query.get('token');
    const user = query.get('user');
    const accept = (identity: Admitted): void => {
      const conn = newConnection(this.nextSid(), identity.user, identity.groups, this.options.burst, Date.now());
      conn.weight = identity.weight ?? 0;
      res.upgrade(conn, key, protocol, extensions, context);
    };
    const reject = (reason: string): void => {
      table.closeConnection(shard);
      counters[Counter.errors_unauthorized]!++;
      counters[Counter.refused_unauthorized]!++;
      refuse(res, '401 Unauthorized', 'E_UNAUTHORIZED', reason);
    };
    if (token) {
      let aborted = false;
      res.onAborted(() => {
        aborted = true;
        table.closeConnection(shard);
      });
      void auth.verify(token).then((result) => {
        if (aborted) return;
        res.cork(() => (result.ok ? accept(result.identity) : reject(result.reason)));
      });
      return;
    }
    if (user !== null) {
      const result = auth.anonymous(user);
      return result.ok ? accept({ user: result.identity.user, groups: null }) : reject(result.reason);
    }
    accept({ user: null, groups: null }); // identity comes with the first frame (`auth`)
  }

  open(ws: Socket): void {
    const conn = ws.getUserData();
    this.options.registry.add(ws);
    this.options.counters[Counter.connections_opened]!++;
    if (this.options.isStopping()) {
      ws.end(CloseCodes.GOING_AWAY, 'server shutting down');
      return;
    }
    if (conn.user !== null) return this.announce(ws, conn);
    const { authTimeout } = this.options;
    conn.authTimer = setTimeout(() => {
      if (conn.closed || conn.user !== null) return;
      this.options.fail(ws, conn, 'E_UNAUTHORIZED', `no auth frame within ${authTimeout} s`, undefined, true);
    }, authTimeout * 1000);
  }

  close(ws: Socket): void {
    const conn = ws.getUserData();
    conn.closed = true;
    if (conn.authTimer) clearTimeout(conn.authTimer);
    this.options.registry.remove(ws, conn);
    if (conn.announced) this.options.link.presence(conn, 0);
    this.options.table.closeConnection(this.options.shard);
    this.options.counters[Counter.connections_closed]!++;
  }

  /** The `auth` frame of a connection that came without a token. */
  authenticate(ws: Socket, conn: Connection, token: string): void {
    void this.options.auth.verify(token).then((result) => {
      // The socket may have gone while the token was checked; uWS forbids touching it then.
      if (conn.closed) return;
      ws.cork(() => {
        if (!result.ok) return this.options.fail(ws, conn, 'E_UNAUTHORIZED', result.reason, undefined, true);
        if (conn.authTimer) clearTimeout(conn.authTimer);
        conn.authTimer = null;
        conn.user = result.identity.user;
        conn.allowed = result.identity.groups;
        conn.weight = result.identity.weight;
        this.announce(ws, conn);
      });
    });
  }

  /** Tells the broker this connection is online; it answers with the `welcome` (and pending count). */
  private announce(ws: Socket, conn: Connection): void {
    this.options.registry.announce(ws, conn);
    this.options.link.presence(conn, 1);
  }

  private nextSid(): string {
    return this.options.idPrefix + (this.sidSeq++).toString(36);
  }
}

/** The subprotocol to answer with: '' when none was offered, null when none is supported. */
export function selectProtocol(offered: string): string | null {
  if (offered === '') return '';
  for (const name of offered.split(',')) if (name.trim() === JSON_PROTOCOL) return JSON_PROTOCOL;
  return null;
}

function refuse(res: HttpResponse, status: string, code: ErrorCode, message: string): void {
  res.writeStatus(status).writeHeader('content-type', 'application/json').end(JSON.stringify({ code, message }));
}

/**
 * Per-connection state, kept as the uWS user data of the socket.
 */
import { performance } from 'node:perf_hooks';
import type { GroupMatcher } from '../auth/identity.js';
import { JSON_FRAMES, type ServerFrames } from '../protocol/server-frames.js';
import type { WebSocket } from '../util/uws.js';
import type { Inbound } from './inbound.js';
import type { Queued } from './out.js';

export interface Connection {
  readonly sid: string;
  /** Its socket, from `open` on (uWS makes the socket after its user data, this object). */
  ws: Socket | null;
  /** null until the connection authenticated (first-frame `auth`). */
  user: string | null;
  allowed: GroupMatcher | null;
  readonly groups: Set<string>;
  /** Token bucket of the per-connection message rate. */
  tokens: number;
  refilledAt: number;
  rateViolations: number;
  badFrames: number;
  /**
   * Last inbound frame or pong, performance.now() ms (for idle_timeout): the monotonic clock,
   * so a step of the wall clock (NTP, a VM restored) does not make quiet connections idle.
   */
  lastSeen: number;
  /** When the next server ping is due, performance.now() ms; 0 until the first sweep spreads it. */
  nextPingAt: number;
  /** performance.now() when the server's last ping went out unanswered; 0: none (ping round trip). */
  pingSentAt: number;
  closed: boolean;
  /**
   * Epoch ms at which the sweep closes the connection with 4001: while `user` is null, the
   * end of auth_timeout; then its token's expiry (Infinity: never).
   */
  expiresAt: number;
  /** Which token set `expiresAt` under `max_lifetime` (Identity.tokenKey): the same one again does not move it. */
  tokenKey: string | null;
  /** Frames are handled as they arrive; until the `welcome` was sent they wait in `held`, in order. */
  ready: boolean;
  /** Frames that arrived while not ready (copies: uWS's buffers die with its callback). */
  held: HeldFrame[] | null;
  heldBytes: number;
  /** The client's address (client-address.ts: a trusted proxy's X-Forwarded-For honoured); '' until admitted. */
  address: string;
  /** Whether it holds one of its address's unauthenticated places (ip-limits) until it authenticates or closes. */
  holdsUnauthenticatedPlace: boolean;
  /** The token's `weight` claim for `any` with the weighted strategy (0: none). */
  weight: number;
  /** True once the broker was told this connection is online (it owes a `welcome`). */
  announced: boolean;
  /** Groups whose presence events it watches (null: none). */
  watching: Set<string> | null;
  /** Per group that keeps history, its joins and leaves the broker has not answered yet, oldest first (group-ops.ts). */
  groupOps: Map<string, number[]> | null;
  /** The replies in this connection's encoding (ocs.v1.json or ocs.v1.msgpack, chosen at the upgrade). */
  frames: ServerFrames;
  /** Frames waiting behind ones the codec pool decodes (inbound.ts); null: none. */
  inq: Inbound[] | null;
  /** What the frames in `inq` hold here: their bytes (not those moved to the pool) and their entries (inbound.ts). */
  inqBytes: number;
  /** Frames to this connection waiting behind one the codec pool is encoding (out.ts); null: none. */
  outq: Queued[] | null;
}

export interface HeldFrame {
  /** null: a frame over max_payload, refused in its turn (Dispatcher.tooLarge). */
  bytes: ArrayBuffer | null;
  /** The refused frame's size. */
  oversize: number;
  binary: boolean;
  /** epochMs() when it arrived: a held pub's latency starts then, not when it is handled. */
  receivedAt: number;
}

/**
 * What uWS keeps as a socket's user data: one property, the Connection. uWS copies the object
 * given to upgrade() property by property into a new one, and with a Connection's 29 fields
 * that copy was a dictionary-mode object: every read of a connection field was a hash lookup
 * (V8's generic LoadIC, 8-10% of a shard's CPU at 15,000 connections in perf). A copy of one
 * property stays a fast object, and the Connection it points at is the one newConnection made.
 */
export interface SocketData {
  readonly conn: Connection;
}

export type Socket = WebSocket<SocketData>;

/** The Connection of a socket. */
export function connOf(ws: Socket): Connection {
  return ws.getUserData().conn;
}

export function newConnection(sid: string, user: string | null, allowed: GroupMatcher | null, burst: number, now: number, expiresAt = Infinity): Connection {
  return {
    sid,
    ws: null,
    user,
    allowed,
    groups: new Set(),
    tokens: burst,
    refilledAt: now,
    rateViolations: 0,
    badFrames: 0,
    lastSeen: performance.now(),
    nextPingAt: 0,
    pingSentAt: 0,
    closed: false,
    expiresAt,
    tokenKey: null,
    ready: false,
    held: null,
    heldBytes: 0,
    address: '',
    holdsUnauthenticatedPlace: false,
    weight: 0,
    announced: false,
    watching: null,
    groupOps: null,
    frames: JSON_FRAMES,
    inq: null,
    inqBytes: 0,
    outq: null,
  };
}

/** Token bucket: `rate` frames per second sustained, `burst` at once. rate 0: unlimited. */
export class RateLimiter {
  private readonly perMs: number;
  constructor(private readonly rate: number, private readonly burst: number) {
    this.perMs = rate / 1000;
  }

  take(conn: Connection, now: number): boolean {
    if (this.rate === 0) return true;
    // Wall-clock time: stepped back (NTP, a restored VM), it would put the bucket in debt for the
    // length of the step and refuse every frame, acks included, until then; it refills nothing instead.
    const elapsed = now - conn.refilledAt;
    let tokens = elapsed > 0 ? conn.tokens + elapsed * this.perMs : conn.tokens;
    if (tokens > this.burst) tokens = this.burst;
    conn.refilledAt = now;
    if (tokens < 1) {
      conn.tokens = tokens;
      return false;
    }
    conn.tokens = tokens - 1;
    return true;
  }
}

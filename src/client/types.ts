/** The SDK's types: its options, the server's frames as the application gets them, and its events. */
import type { OcsError } from '../protocol/errors.js';
import type { AnyStrategy, PriorityValue } from '../protocol/frames.js';
import type { ReconnectOptions } from './reconnect.js';
import type { Position } from './recovery.js';
import type { WebSocketConstructor } from './socket.js';
import type { TokenSource } from './token.js';

/** What `new OcsClient(options)` takes. */
export interface ClientOptions {
  /** `ws://HOST:PORT/ws` (or `wss://`). */
  url: string;
  /** A JWT, or a function returning one (asked again before it expires and after a 4001). */
  token?: string | TokenSource;
  /** Anonymous user id, for servers in development mode (`?user=`); ignored with a token. */
  user?: string;
  /** `msgpack` offers `ocs.v1.msgpack` first and falls back to JSON if the server picks it. */
  encoding?: 'json' | 'msgpack';
  /** The WebSocket class: the global one by default; pass `ws`'s in Node 20. */
  WebSocket?: WebSocketConstructor;
  /** Acknowledge stored messages once the `message` listeners returned (default true). */
  autoAck?: boolean;
  /** Reconnect policy (reconnect.ts), or false to stop at the first close. */
  reconnect?: Partial<ReconnectOptions> | false;
  /** How long a sent request waits for its answer (default 10 s). */
  requestTimeoutMs?: number;
  /** Requests kept while there is no connection (default 1000). */
  maxQueued?: number;
  /** How many message ids are remembered to drop duplicates (default 10 000). */
  dedupeWindow?: number;
  /** Silence after which a `ping` is sent, and twice which the connection counts as dead (default 15 s; 0: never). */
  heartbeatMs?: number;
  /** How long a connection may take to be welcomed (default 10 s). */
  connectTimeoutMs?: number;
  /** Largest frame taken from the server, bytes (default MAX_FRAME_BYTES, 100 MiB; Infinity: no cap); a larger one closes the connection with 1009 unread, and it reconnects. */
  maxFrameBytes?: number;
  /**
   * The most the values of one frame may cost the heap, about (default MAX_FRAME_HEAP_BYTES, 64
   * MiB; Infinity: no cap): a frame over it (a hostile server's `[{},{},…]`) is dropped unbuilt,
   * E_BAD_FRAME on `error`, and the connection goes on.
   */
  maxFrameHeapBytes?: number;
  /** Random numbers in [0, 1) for the backoff's jitter (tests pass a fixed one). */
  random?: () => number;
}

/** A delivered message (`msg`, or one of a `batch`), exactly as decoded. */
export interface Message<T = unknown> {
  op: 'msg';
  id: string;
  from: string;
  /** Set for group messages (`pub`, `any`). */
  group?: string;
  data: T;
  pri: PriorityValue;
  /** Server receive time, epoch ms. */
  ts: number;
  /** A stored message (`send`/`any`): acknowledged by the client (automatically, unless `autoAck: false`). */
  ackReq?: true;
  /** Groups that keep history: the message's place in the group, and the numbering's epoch. */
  offset?: number;
  epoch?: string;
}

export interface Welcome {
  user: string;
  sid: string;
  shard: number;
  pending: number;
  /** When the token expires (epoch ms); absent: never. */
  expiresAt?: number;
  /** What the server allows this connection: frames a second (0: unlimited), the burst above that, ids per `ack` (servers before these say nothing). */
  limits?: { messagesPerSecond: number; burst: number; ackIds: number };
}

export interface JoinResult {
  group: string;
  /** Whether the group keeps history (its messages carry offsets). */
  history: boolean;
  /** History groups: every message since the last one seen was recovered (always true for a first join). */
  recovered?: boolean;
  position?: Position;
}

export interface PresenceEvent {
  group: string;
  joins: string[];
  leaves: string[];
}

export interface PresenceSnapshot {
  group: string;
  /** Connections per user; absent when counts were asked for, or the group is too large to list. */
  users?: Map<string, number>;
  total: { users: number; conns: number };
}

export interface HistoryPage {
  group: string;
  msgs: Message[];
  /** The group's top offset. */
  offset: number;
  epoch: string;
  /** The limit cut the page: ask again from the last offset. */
  more: boolean;
}

export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface ClientEvents {
  /** A connection was accepted (each reconnect too: `reconnected` says which). */
  open: Welcome & { reconnected: boolean };
  /** A message for the application: each one once, duplicates dropped. */
  message: Message;
  /** A join was answered, the first one or a re-join after a reconnect. */
  joined: JoinResult & { rejoin: boolean };
  /** A history group lost messages the server could not replay: reload it (`history()`) if they matter. */
  gap: { group: string; position: Position; reason: 'not_recovered' | 'offset_gap' | 'new_epoch' };
  presence: PresenceEvent;
  /** The connection closed; `retryInMs` is when the next attempt starts (absent: the client stopped). */
  disconnect: { code: number; reason: string; retryInMs?: number };
  state: ConnectionState;
  /** An `err` no request was waiting for, a listener that threw, a token callback that failed. */
  error: OcsError | Error;
  /** The client stopped for good: closed by the application, or refused in a way retrying cannot help. */
  closed: { code: number; reason: string };
}

export interface PublishOptions {
  pri?: PriorityValue;
}

export interface SendOptions extends PublishOptions {
  /** Deliver at this time (epoch ms). */
  at?: number;
}

export interface AnyOptions extends PublishOptions {
  strategy?: AnyStrategy;
}

export interface JoinOptions {
  /** Also receive `presence` events (users joining and leaving) for this group. */
  presence?: boolean;
}

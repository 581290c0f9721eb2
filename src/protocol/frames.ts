/**
 * ocs.v1 frames as values, and their validation. Shared by the server, the SDK and the load
 * tester; the encoding (JSON here, MessagePack later) lives in its own codec module.
 */
import type { ErrorCode, ErrorReason } from './errors.js';

export const Priority = { LOW: 0, NORMAL: 1, HIGH: 2, CRITICAL: 3 } as const;
export type PriorityValue = (typeof Priority)[keyof typeof Priority];

/**
 * Group names and user ids travel unescaped inside JSON frames and double as uWS topic
 * names, so they are limited to characters that need no escaping and carry no pattern
 * meaning (`*` is reserved for `prefix.*` patterns in tokens).
 */
export const NAME_PATTERN = /^[A-Za-z0-9_.:@/#+-]{1,128}$/;
/** The sender of what the embedding application sends and publishes: no client may be this user (identity.ts). */
export const SERVER_SENDER = '@server';
/**
 * A group name or a `prefix*` pattern (`room.*` matches `room.a` and `room.a.b`; `*` alone
 * matches every group): the token's `groups` claim and the `websocket.history` patterns.
 */
export const GROUP_PATTERN = /^(?:[A-Za-z0-9_.:@/#+-]{1,128}|[A-Za-z0-9_.:@/#+-]{0,127}\*)$/;
export const MAX_REF_LENGTH = 128;
/**
 * Half of a UTF-16 surrogate pair standing alone: valid in a JSON string (`"\ud800"`), but not
 * text UTF-8 can carry, so the broker's records (and a msgpack reply) would give back U+FFFD
 * instead, and a client matching its replies by `ref` would never find one.
 */
const LONE_SURROGATE = /[\ud800-\udfff]/u;

/** The subprotocols (`Sec-WebSocket-Protocol`) of the two encodings. */
export const JSON_PROTOCOL = 'ocs.v1.json';
export const MSGPACK_PROTOCOL = 'ocs.v1.msgpack';

/**
 * Deepest nesting of a frame, the frame object itself being level 1, in either encoding.
 * JSON.parse takes any depth, but encoding `data` again (a `msg`, a stored message) recurses:
 * 30,000 levels fit in 64 KiB and overflow the stack.
 */
export const MAX_DEPTH = 64;
/**
 * Deepest nesting of a frame from the server: a `batch` or a `history` page holds its `msg`
 * frames two levels down (frame, `msgs`), so data a client frame was allowed to carry is two
 * levels deeper there. A client that decoded server frames with MAX_DEPTH dropped such a frame
 * whole, and every message in it.
 */
export const MAX_SERVER_FRAME_DEPTH = MAX_DEPTH + 2;

export type ClientFrame =
  | { op: 'auth'; token: string; ref: string | undefined }
  | { op: 'join'; group: string; ref: string | undefined; since?: Since; presence?: boolean }
  | { op: 'leave'; group: string; ref: string | undefined }
  | { op: 'presence'; group: string; ref: string | undefined; counts: boolean }
  | { op: 'history'; group: string; ref: string | undefined; since: number; limit: number | undefined }
  | { op: 'pub'; group: string; data: unknown; pri: PriorityValue; ref: string | undefined }
  | { op: 'ping'; t: number }
  | { op: 'send'; to: string; data: unknown; pri: PriorityValue; ref: string | undefined; at: number | undefined }
  | { op: 'any'; group: string; data: unknown; pri: PriorityValue; ref: string | undefined; strategy: AnyStrategy | undefined }
  /** `id`, or `ids` (several acknowledged in one frame); either way as a list here. */
  | { op: 'ack'; ids: readonly string[] };

/** Where a client stands in a group's history: the last offset it has, of that epoch. */
export interface Since {
  offset: number;
  epoch: string;
}

/** Longest epoch a client may send back (the server's are 16 characters). */
export const MAX_EPOCH_LENGTH = 128;

/** How `any` picks the one member that gets a message. */
export const ANY_STRATEGIES = ['round_robin', 'least_connections', 'weighted'] as const;
export type AnyStrategy = (typeof ANY_STRATEGIES)[number];
/** Longest message id a client may acknowledge (server ids are far shorter). */
export const MAX_ID_LENGTH = 128;
/**
 * Ids one `ack` frame may carry: a client draining a backlog acknowledges a batch in one frame
 * instead of one frame per message, which a rate limit of 100 frames a second made 100
 * messages a second. Each id still costs the broker a look-up (in cluster mode a Redis script)
 * and may cost an `err` back, for one token of the rate limit: at 128, a review's one
 * connection at the limit ran 6,500 scripts a second and stalled stored messages on every node.
 * 16 lets a client drain 1,600 a second and keeps a frame within 16 single acks. (Charging the
 * ids the broker did not know was tried and undone: a user's two tabs both ack each message,
 * and the second ack of each is unknown, so honest clients were closed 4029.)
 */
export const MAX_ACK_IDS = 16;

function isMessageId(id: unknown): boolean {
  return typeof id === 'string' && id.length > 0 && id.length <= MAX_ID_LENGTH && !LONE_SURROGATE.test(id);
}

export interface FrameError {
  op: 'err';
  code: ErrorCode;
  message: string;
  ref: string | undefined;
  reason?: ErrorReason;
}

export function frameError(code: ErrorCode, message: string, ref?: string, reason?: ErrorReason): FrameError {
  return reason === undefined ? { op: 'err', code, message, ref } : { op: 'err', code, message, ref, reason };
}

/** Validates a decoded object (JSON or MessagePack) as a client frame. */
export function toClientFrame(value: unknown): ClientFrame | FrameError {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return frameError('E_BAD_FRAME', 'a frame must be a JSON object');
  }
  const frame = value as Record<string, unknown>;
  const ref = frame.ref;
  if (ref !== undefined && (typeof ref !== 'string' || ref.length > MAX_REF_LENGTH || LONE_SURROGATE.test(ref))) {
    return frameError('E_BAD_FRAME', `ref must be a well-formed string of at most ${MAX_REF_LENGTH} characters`);
  }
  switch (frame.op) {
    case 'pub': {
      const group = frame.group;
      if (typeof group !== 'string' || !NAME_PATTERN.test(group)) return badGroup(ref);
      if (!Object.hasOwn(frame, 'data')) return frameError('E_BAD_FRAME', 'pub needs data', ref);
      const pri = frame.pri ?? Priority.NORMAL;
      if (pri !== 0 && pri !== 1 && pri !== 2 && pri !== 3) {
        return frameError('E_BAD_FRAME', 'pri must be 0 (LOW), 1 (NORMAL), 2 (HIGH) or 3 (CRITICAL)', ref);
      }
      return { op: 'pub', group, data: frame.data, pri, ref };
    }
    case 'send': {
      const to = frame.to;
      if (typeof to !== 'string' || !NAME_PATTERN.test(to)) return frameError('E_BAD_FRAME', `to must be a user id matching ${NAME_PATTERN.source}`, ref as string | undefined);
      if (!Object.hasOwn(frame, 'data')) return frameError('E_BAD_FRAME', 'send needs data', ref as string | undefined);
      const pri = frame.pri ?? Priority.NORMAL;
      if (!isPriority(pri)) return badPriority(ref);
      const at = frame.at;
      if (at !== undefined && (typeof at !== 'number' || !Number.isFinite(at) || at < 0)) {
        return frameError('E_BAD_FRAME', 'at must be a time in epoch milliseconds', ref as string | undefined);
      }
      return { op: 'send', to, data: frame.data, pri, ref: ref as string | undefined, at };
    }
    case 'any': {
      const group = frame.group;
      if (typeof group !== 'string' || !NAME_PATTERN.test(group)) return badGroup(ref);
      if (!Object.hasOwn(frame, 'data')) return frameError('E_BAD_FRAME', 'any needs data', ref as string | undefined);
      const pri = frame.pri ?? Priority.NORMAL;
      if (!isPriority(pri)) return badPriority(ref);
      // Unknown fields are let pass, but this one has a meaning a client may expect: refused, not ignored.
      if (Object.hasOwn(frame, 'at')) return frameError('E_BAD_FRAME', 'any has no at: it is delivered at once (only a send is scheduled)', ref as string | undefined);
      const strategy = frame.strategy;
      if (strategy !== undefined && !(ANY_STRATEGIES as readonly unknown[]).includes(strategy)) {
        return frameError('E_BAD_FRAME', `strategy must be one of ${ANY_STRATEGIES.join(', ')}`, ref as string | undefined);
      }
      return { op: 'any', group, data: frame.data, pri, ref: ref as string | undefined, strategy: strategy as AnyStrategy | undefined };
    }
    case 'ack': {
      const ids = frame.ids === undefined ? [frame.id] : frame.id === undefined ? frame.ids : null;
      if (!Array.isArray(ids) || ids.length === 0 || ids.length > MAX_ACK_IDS || !ids.every(isMessageId)) {
        return frameError('E_BAD_FRAME', `ack needs an id, or ids (1 to ${MAX_ACK_IDS}): each a well-formed string of at most ${MAX_ID_LENGTH} characters`, ref as string | undefined);
      }
      return { op: 'ack', ids: ids as string[] };
    }
    case 'join':
      return toJoin(frame, ref);
    case 'leave': {
      const group = frame.group;
      if (typeof group !== 'string' || !NAME_PATTERN.test(group)) return badGroup(ref);
      return { op: frame.op, group, ref };
    }
    case 'presence': {
      const group = frame.group;
      if (typeof group !== 'string' || !NAME_PATTERN.test(group)) return badGroup(ref);
      const counts = frame.counts ?? false;
      if (typeof counts !== 'boolean') return frameError('E_BAD_FRAME', 'counts must be true or false', ref);
      return { op: 'presence', group, ref, counts };
    }
    case 'history': {
      const group = frame.group;
      if (typeof group !== 'string' || !NAME_PATTERN.test(group)) return badGroup(ref);
      const since = frame.since ?? 0;
      if (!isOffset(since)) return frameError('E_BAD_FRAME', 'since must be an offset: an integer of at least 0', ref);
      const limit = frame.limit;
      if (limit !== undefined && (!isOffset(limit) || limit === 0)) return frameError('E_BAD_FRAME', 'limit must be an integer of at least 1', ref);
      return { op: 'history', group, ref, since, limit };
    }
    case 'ping': {
      const t = frame.t;
      if (typeof t !== 'number' || !Number.isFinite(t)) return frameError('E_BAD_FRAME', 'ping needs a number t', ref);
      return { op: 'ping', t };
    }
    case 'auth': {
      const token = frame.token;
      if (typeof token !== 'string' || token.length === 0) return frameError('E_BAD_FRAME', 'auth needs a token string', ref);
      return { op: 'auth', token, ref };
    }
    case undefined:
      return frameError('E_BAD_FRAME', 'a frame needs an op', ref);
    default:
      return frameError('E_BAD_FRAME', `unknown op ${JSON.stringify(frame.op).slice(0, 40)}`, ref, 'unknown_op');
  }
}

/** `join`: `since` (recovery in a group that keeps history) and `presence` (events) are optional. */
function toJoin(frame: Record<string, unknown>, ref: string | undefined): ClientFrame | FrameError {
  const group = frame.group;
  if (typeof group !== 'string' || !NAME_PATTERN.test(group)) return badGroup(ref);
  const join: Extract<ClientFrame, { op: 'join' }> = { op: 'join', group, ref };
  const presence = frame.presence;
  if (presence !== undefined) {
    if (typeof presence !== 'boolean') return frameError('E_BAD_FRAME', 'presence must be true or false', ref);
    join.presence = presence;
  }
  const since = frame.since;
  if (since !== undefined) {
    if (since === null || typeof since !== 'object' || Array.isArray(since)) return frameError('E_BAD_FRAME', 'since must be an object {offset, epoch}', ref);
    const { offset, epoch } = since as Record<string, unknown>;
    if (!isOffset(offset)) return frameError('E_BAD_FRAME', 'since.offset must be an integer of at least 0', ref);
    if (typeof epoch !== 'string' || epoch.length === 0 || epoch.length > MAX_EPOCH_LENGTH) {
      return frameError('E_BAD_FRAME', `since.epoch must be a string of 1 to ${MAX_EPOCH_LENGTH} characters`, ref);
    }
    join.since = { offset, epoch };
  }
  return join;
}

/** An offset in a group's history: an integer a double holds exactly, 0 or more. */
function isOffset(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function isPriority(pri: unknown): pri is PriorityValue {
  return pri === 0 || pri === 1 || pri === 2 || pri === 3;
}

function badPriority(ref: unknown): FrameError {
  return frameError('E_BAD_FRAME', 'pri must be 0 (LOW), 1 (NORMAL), 2 (HIGH) or 3 (CRITICAL)', ref as string | undefined);
}

function badGroup(ref: unknown): FrameError {
  return frameError('E_BAD_FRAME', `group must match ${NAME_PATTERN.source}`, ref as string | undefined);
}

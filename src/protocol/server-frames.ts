/**
 * The server's replies (everything but `msg` and `batch`, which are encoded once per
 * broadcast or delivery elsewhere, and the broker's answers about groups, `presence` and
 * `history`, which it writes as JSON and a shard turns binary for msgpack connections) in the
 * encoding of one connection: a connection holds one of these two tables, chosen when it
 * opened, so a reply costs no branch on its encoding.
 * JSON replies are text (strings, as json-codec.ts builds them); MessagePack replies are binary
 * frames, never compressed (they are a few dozen bytes).
 */
import type { ErrorCode, ErrorReason } from './errors.js';
import type { FrameError } from './frames.js';
import { encodeAck, encodeAuthAck, encodeError, encodeJoined, encodeLeft, encodePong, encodeWelcome } from './json-codec.js';
import { encodeHistoryJoined, encodePubAck } from './json-group-frames.js';
import { writeFrame } from './msgpack-codec.js';

/** A frame as uWS sends it: a string goes as a text frame, bytes as a binary frame. */
export type Wire = string | Uint8Array;

/**
 * What a `welcome` tells the client of the limits it must keep to (PROTOCOL.md): the frames a
 * second and the burst of `websocket.limits`, and the ids one `ack` may carry. A client that
 * paces itself by them is never refused 4029 for a burst of its own making (re-joins, acks).
 */
export interface WelcomeLimits {
  messagesPerSecond: number;
  burst: number;
  ackIds: number;
}

export interface ServerFrames {
  readonly binary: boolean;
  /** `expiresAt`: epoch ms when the token runs out; Infinity: never (the field is left out). */
  welcome(user: string, sid: string, shard: number, pending: number, expiresAt: number, limits: WelcomeLimits): Wire;
  authAck(ref: string | undefined, expiresAt: number): Wire;
  joined(group: string, ref: string | undefined): Wire;
  /** `joined` of a group that keeps history: its top offset and epoch; `recovered` only when the join asked to recover. */
  historyJoined(group: string, ref: string | undefined, offset: number, epoch: string, recovered: boolean | undefined): Wire;
  left(group: string, ref: string | undefined): Wire;
  ack(ref: string | undefined, id: string): Wire;
  /** The `ack` of a pub to a group that keeps history: also the offset its message got. */
  pubAck(ref: string | undefined, id: string, offset: number): Wire;
  pong(t: number, serverTime: number): Wire;
  /** `id`: the message id of a refused `ack`. */
  error(code: ErrorCode, message: string, ref?: string, reason?: ErrorReason, id?: string): Wire;
}

export const JSON_FRAMES: ServerFrames = {
  binary: false,
  welcome: encodeWelcome,
  authAck: encodeAuthAck,
  joined: encodeJoined,
  historyJoined: encodeHistoryJoined,
  left: encodeLeft,
  ack: encodeAck,
  pubAck: encodePubAck,
  pong: encodePong,
  error: encodeError,
};

/** Optional fields are left out, as in JSON, rather than written as nil. */
export const MSGPACK_FRAMES: ServerFrames = {
  binary: true,
  welcome: (user, sid, shard, pending, expiresAt, limits) =>
    writeFrame(expiresAt === Infinity ? { op: 'welcome', user, sid, shard, pending, limits } : { op: 'welcome', user, sid, shard, pending, expiresAt, limits }),
  authAck: (ref, expiresAt) => {
    const frame: Record<string, unknown> = { op: 'ack' };
    if (ref !== undefined) frame.ref = ref;
    if (expiresAt !== Infinity) frame.expiresAt = expiresAt;
    return writeFrame(frame);
  },
  joined: (group, ref) => writeFrame(ref === undefined ? { op: 'joined', group } : { op: 'joined', group, ref }),
  historyJoined: (group, ref, offset, epoch, recovered) => {
    const frame: Record<string, unknown> = { op: 'joined', group };
    if (ref !== undefined) frame.ref = ref;
    if (recovered !== undefined) frame.recovered = recovered;
    frame.offset = offset;
    frame.epoch = epoch;
    return writeFrame(frame);
  },
  left: (group, ref) => writeFrame(ref === undefined ? { op: 'left', group } : { op: 'left', group, ref }),
  ack: (ref, id) => writeFrame(ref === undefined ? { op: 'ack', id } : { op: 'ack', ref, id }),
  pubAck: (ref, id, offset) => writeFrame(ref === undefined ? { op: 'ack', id, offset } : { op: 'ack', ref, id, offset }),
  pong: (t, st) => writeFrame({ op: 'pong', t, st }),
  error: (code, message, ref, reason, id) => {
    const frame: Record<string, unknown> = { op: 'err', code, message };
    if (ref !== undefined) frame.ref = ref;
    if (reason !== undefined) frame.reason = reason;
    if (id !== undefined) frame.id = id;
    return writeFrame(frame);
  },
};

export function frameErrorIn(frames: ServerFrames, error: FrameError): Wire {
  return frames.error(error.code, error.message, error.ref, error.reason);
}

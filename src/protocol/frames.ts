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
export const MAX_REF_LENGTH = 128;

export type ClientFrame =
  | { op: 'auth'; token: string; ref: string | undefined }
  | { op: 'join'; group: string; ref: string | undefined }
  | { op: 'leave'; group: string; ref: string | undefined }
  | { op: 'pub'; group: string; data: unknown; pri: PriorityValue; ref: string | undefined }
  | { op: 'ping'; t: number }
  | { op: 'send'; to: string; data: unknown; pri: PriorityValue; ref: string | undefined; at: number | undefined }
  | { op: 'any'; group: string; data: unknown; pri: PriorityValue; ref: string | undefined; strategy: AnyStrategy | undefined }
  | { op: 'ack'; id: string };

/** How `any` picks the one member that gets a message. */
export const ANY_STRATEGIES = ['round_robin', 'least_connections', 'weighted'] as const;
export type AnyStrategy = (typeof ANY_STRATEGIES)[number];
/** Longest message id a client may acknowledge (server ids are far shorter). */
export const MAX_ID_LENGTH = 128;

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
  if (ref !== undefined && (typeof ref !== 'string' || ref.length > MAX_REF_LENGTH)) {
    return frameError('E_BAD_FRAME', `ref must be a string of at most ${MAX_REF_LENGTH} characters`);
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
      const strategy = frame.strategy;
      if (strategy !== undefined && !(ANY_STRATEGIES as readonly unknown[]).includes(strategy)) {
        return frameError('E_BAD_FRAME', `strategy must be one of ${ANY_STRATEGIES.join(', ')}`, ref as string | undefined);
      }
      return { op: 'any', group, data: frame.data, pri, ref: ref as string | undefined, strategy: strategy as AnyStrategy | undefined };
    }
    case 'ack': {
      const id = frame.id;
      if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_LENGTH) {
        return frameError('E_BAD_FRAME', `ack needs an id string of at most ${MAX_ID_LENGTH} characters`, ref as string | undefined);
      }
      return { op: 'ack', id };
    }
    case 'join':
    case 'leave': {
      const group = frame.group;
      if (typeof group !== 'string' || !NAME_PATTERN.test(group)) return badGroup(ref);
      return { op: frame.op, group, ref };
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

function isPriority(pri: unknown): pri is PriorityValue {
  return pri === 0 || pri === 1 || pri === 2 || pri === 3;
}

function badPriority(ref: unknown): FrameError {
  return frameError('E_BAD_FRAME', 'pri must be 0 (LOW), 1 (NORMAL), 2 (HIGH) or 3 (CRITICAL)', ref as string | undefined);
}

function badGroup(ref: unknown): FrameError {
  return frameError('E_BAD_FRAME', `group must match ${NAME_PATTERN.source}`, ref as string | undefined);
}

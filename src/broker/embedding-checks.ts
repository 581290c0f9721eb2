/**
 * Checks on what the embedding API and client frames ask of the broker beyond their shape:
 * the shard validates a client frame's fields (src/protocol/frames.ts); the embedding API's
 * arguments are checked here, and how far ahead a send may be scheduled is checked here for
 * both, since only the broker knows delivery.max_schedule_ahead.
 */
import { NAME_PATTERN } from '../protocol/frames.js';

export interface CheckedSendOptions {
  pri: number;
  at: number;
  from: string;
}

/** The embedding API's `pri` (NORMAL when absent); a TypeError for anything but 0..3. */
export function checkPri(pri: unknown): number {
  if (pri === undefined) return 1;
  if (pri !== 0 && pri !== 1 && pri !== 2 && pri !== 3) throw new TypeError('pri must be 0, 1, 2 or 3');
  return pri;
}

/**
 * The embedding API's `send(user, data, options)` arguments, with their defaults; a TypeError
 * for a bad one. `from` travels unescaped in frames, so it must be a name like any user id.
 */
export function checkSendOptions(user: unknown, options: { pri?: unknown; at?: unknown; from?: unknown }, defaultFrom: string): CheckedSendOptions {
  if (typeof user !== 'string' || !NAME_PATTERN.test(user)) throw new TypeError(`user must match ${NAME_PATTERN.source}`);
  const pri = checkPri(options.pri);
  const at = options.at ?? 0;
  if (typeof at !== 'number' || !Number.isFinite(at) || at < 0) throw new TypeError('at must be a time in epoch milliseconds (a finite number, not negative)');
  const from = options.from ?? defaultFrom;
  if (typeof from !== 'string' || !NAME_PATTERN.test(from)) throw new TypeError(`from must match ${NAME_PATTERN.source}`);
  return { pri, at, from };
}

/** Why a send for `at` is refused (further ahead than delivery.max_schedule_ahead seconds), or null. */
export function scheduleRefusal(at: number, now: number, maxAheadSeconds: number): string | null {
  if (at - now <= maxAheadSeconds * 1000) return null;
  return `at is ${Math.round((at - now) / 1000)} s ahead; a send may be scheduled at most ${maxAheadSeconds} s ahead (delivery.max_schedule_ahead)`;
}

/**
 * Checks on what the embedding API and client frames ask of the broker beyond their shape:
 * the shard validates a client frame's fields (src/protocol/frames.ts); the embedding API's
 * arguments are checked here, and how far ahead a send may be scheduled is checked here for
 * both, since only the broker knows delivery.max_schedule_ahead.
 */
import { OcsError } from '../protocol/errors.js';
import { NAME_PATTERN } from '../protocol/frames.js';
import { dataTooDeep, MAX_DATA_DEPTH } from '../protocol/json-codec.js';

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

/**
 * The JSON text of `data` from the embedding API or a processor, held to the nesting a client
 * frame may have (E_BAD_FRAME beyond it, as a client gets): deeper data would be stored, then
 * overflow the stack wherever it is encoded again. A cycle, a BigInt, or data that is no JSON
 * value at all (undefined, a function, a symbol: JSON.stringify gives nothing) throws a TypeError.
 */
export function dataJsonOf(data: unknown): string {
  if (dataTooDeep(data)) throw new OcsError('E_BAD_FRAME', `data is nested deeper than ${MAX_DATA_DEPTH} levels (or circular)`);
  const json = JSON.stringify(data) as string | undefined;
  if (json === undefined) throw new TypeError(`data must be a JSON value, not ${typeof data}`);
  return json;
}

/**
 * The embedding API's `publish(group, data, options)` arguments, checked as one: the broker and
 * a cluster node take the same ones. `oversize` says why the data is too large to carry (null:
 * it fits); a TypeError for a bad argument, an OcsError for data too deep or too large.
 */
export function checkPublishArgs(
  group: unknown,
  data: unknown,
  options: { pri?: unknown; from?: unknown },
  defaultFrom: string,
  oversize: (dataJson: string) => string | null,
): { pri: number; from: string; dataJson: string } {
  if (typeof group !== 'string' || !NAME_PATTERN.test(group)) throw new TypeError(`group must match ${NAME_PATTERN.source}`);
  const pri = checkPri(options.pri);
  const from = options.from ?? defaultFrom;
  if (typeof from !== 'string' || !NAME_PATTERN.test(from)) throw new TypeError(`from must match ${NAME_PATTERN.source}`);
  const dataJson = dataJsonOf(data);
  const over = oversize(dataJson);
  if (over !== null) throw new OcsError('E_TOO_LARGE', over);
  return { pri, from, dataJson };
}

/** Why a send for `at` is refused (further ahead than delivery.max_schedule_ahead seconds), or null. */
export function scheduleRefusal(at: number, now: number, maxAheadSeconds: number): string | null {
  if (at - now <= maxAheadSeconds * 1000) return null;
  return `at is ${Math.round((at - now) / 1000)} s ahead; a send may be scheduled at most ${maxAheadSeconds} s ahead (delivery.max_schedule_ahead)`;
}

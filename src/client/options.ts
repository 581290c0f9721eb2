/**
 * The client's options, checked once when it is made, as the server checks its config at
 * start-up (src/config/schema.ts): a bad one throws a TypeError naming itself and what it
 * takes. Unchecked, NaN as requestTimeoutMs ran the request sweeper every millisecond and no
 * request ever timed out; NaN, 0 or a negative reconnect delay reconnected about 300 times a
 * second; a string where a number belongs was added as text, `autoAck: 'false'` acknowledged.
 */
import { NAME_PATTERN } from '../protocol/frames.js';
import type { ReconnectOptions } from './reconnect.js';
import type { ClientOptions } from './types.js';

/** What a value must pass, and what the message says it must be. */
type Rule = readonly [test: (value: unknown) => boolean, takes: string];

/**
 * A number of at least `min` (`above`: more than it), an integer where it counts things,
 * Infinity where it means never or no cap (client.md: a delay of Infinity waits for ever).
 */
function number(min: number, { integer = false, above = false, infinity = false, max = Infinity } = {}): Rule {
  return [
    (v) => typeof v === 'number' && (v === Infinity ? infinity : (integer ? Number.isInteger(v) : !Number.isNaN(v)) && (above ? v > min : v >= min) && v <= max),
    `${integer ? 'an integer' : 'a number'} ${above ? 'above' : 'of at least'} ${min}${max < Infinity ? ` and at most ${max}` : ''}${infinity ? ', or Infinity' : ''}`,
  ];
}

const isFunction: Rule[0] = (v) => typeof v === 'function';
/** A delay or timeout: 0 would spin (or give up at once), Infinity waits for ever. */
const delay = number(0, { above: true, infinity: true });
/** 0: off (the heartbeat), or reset at every welcome (stableMs). */
const delayOrZero = number(0, { infinity: true });
/** The frame limits (connection.ts): at least 1 KiB, the least `max_payload` the server itself takes. */
const frameBytes = number(1024, { integer: true, infinity: true });

const RULES: { readonly [K in keyof ClientOptions]-?: Rule } = {
  url: [(v) => typeof v === 'string' && /^wss?:\/\//.test(v), 'a ws:// or wss:// URL'],
  token: [(v) => typeof v === 'string' || isFunction(v), 'a string or a function returning one'],
  // As the server checks `?user=` (a lone surrogate would throw in encodeURIComponent at each dial).
  user: [(v) => typeof v === 'string' && NAME_PATTERN.test(v), '1 to 128 of A-Z a-z 0-9 _ . : @ / # + -'],
  encoding: [(v) => v === 'json' || v === 'msgpack', "'json' or 'msgpack'"],
  WebSocket: [isFunction, 'a WebSocket class'],
  autoAck: [(v) => typeof v === 'boolean', 'true or false'],
  reconnect: [(v) => v === false || (typeof v === 'object' && v !== null), 'false or an object of backoff settings'],
  requestTimeoutMs: delay,
  // Infinity is no bound: requests would pile up without end while offline.
  maxQueued: number(0, { integer: true }),
  // Each window is a Map, and V8's Map holds at most 2^24 entries (more throws on a message).
  dedupeWindow: number(1, { integer: true, max: 2 ** 24 }),
  heartbeatMs: delayOrZero,
  connectTimeoutMs: delay,
  maxFrameBytes: frameBytes,
  maxFrameHeapBytes: frameBytes,
  random: [isFunction, 'a function returning numbers in [0, 1)'],
};

const RECONNECT_RULES: { readonly [K in keyof ReconnectOptions]-?: Rule } = {
  initialMs: delay,
  maxMs: delay,
  // Below 1 the delays shrink to nothing: a tight loop against a server that refuses.
  factor: number(1),
  soonMs: delay,
  penaltyMs: delay,
  stableMs: delayOrZero,
  maxAttempts: number(0, { integer: true, infinity: true }),
};

/** Absent (or undefined) is the default; `url` alone is required; a key no rule knows (a misspelling, ignored, would leave its default in force unseen) is refused. */
function check(given: object, rules: Readonly<Record<string, Rule>>, prefix: string): void {
  for (const key of Object.keys(given)) {
    if (!Object.prototype.hasOwnProperty.call(rules, key)) throw new TypeError(`${prefix}${key} is not an option (${Object.keys(rules).join(', ')})`);
  }
  for (const [key, [test, takes]] of Object.entries(rules)) {
    const value = (given as Record<string, unknown>)[key];
    if ((value !== undefined || key === 'url') && !test(value)) {
      // The value itself only if a number: a string given may be a token, or a URL carrying one.
      throw new TypeError(`${prefix}${key} must be ${takes} (given: ${typeof value === 'number' ? value : typeof value})`);
    }
  }
}

/** The options, checked, as a frozen copy: changing the caller's object later changes nothing. */
export function checkedOptions(options: ClientOptions): Readonly<ClientOptions> {
  // No options at all: told as the missing url.
  check(options ?? {}, RULES, '');
  if (options.reconnect) check(options.reconnect, RECONNECT_RULES, 'reconnect.');
  return Object.freeze({ ...options });
}

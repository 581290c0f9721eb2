/**
 * The SDK's options are checked when the client is made, as the server checks its config at
 * start-up: a bad one (NaN, negative, a fraction where a count is meant, a string from an
 * untyped caller or a config file) throws a TypeError naming itself and what it takes, rather
 * than misbehaving later (NaN as requestTimeoutMs ran the request sweeper every millisecond and
 * no request ever timed out). The documented defaults and edge values still construct.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';
import { DEFAULT_RECONNECT, decideReconnect, MAX_FRAME_BYTES, MAX_FRAME_HEAP_BYTES, OcsClient, type ClientOptions } from '../src/client/index.js';

// Never dialled: the constructor opens nothing.
const make = (options: Record<string, unknown>): OcsClient => new OcsClient({ url: 'ws://127.0.0.1:9/ws', WebSocket, ...options } as ClientOptions);

/** [the option as named in the message, its bad values]; `reconnect.x` is a key of `reconnect`. */
const BAD: Array<[string, unknown[]]> = [
  ['url', [undefined, 'http://x/ws', 42]],
  ['token', [42, null]],
  ['user', ['', 'a b', 42]],
  ['encoding', ['MessagePack', 'JSON', null]],
  ['WebSocket', ['ws', {}]],
  ['autoAck', ['false', 0]],
  ['reconnect', [true, 'false', null]],
  ['requestTimeoutMs', [NaN, 0, -1, '5000', null]],
  ['maxQueued', [NaN, -1, 1.5, Infinity, '10']],
  ['dedupeWindow', [NaN, 0, 1.5, Infinity, 2 ** 24 + 1, '100']],
  ['heartbeatMs', [NaN, -1, '15000']],
  ['connectTimeoutMs', [NaN, 0, -1, '10000']],
  ['maxFrameBytes', [NaN, 0, 1023, 2048.5, '2048']],
  ['maxFrameHeapBytes', [NaN, -Infinity, 1000]],
  ['random', [0.5, 'Math.random']],
  ['reconnect.initialMs', [NaN, 0, -1, '500']],
  ['reconnect.maxMs', [NaN, 0, -5]],
  ['reconnect.factor', [NaN, 0, 0.5, -2, Infinity, '2']],
  ['reconnect.soonMs', [NaN, 0]],
  ['reconnect.penaltyMs', [NaN, -1]],
  ['reconnect.stableMs', [NaN, -1]],
  ['reconnect.maxAttempts', [NaN, -1, 2.5, '5']],
];

const optionsWith = (name: string, value: unknown): Record<string, unknown> => {
  const [outer, inner] = name.split('.');
  return inner === undefined ? { [outer!]: value } : { [outer!]: { [inner]: value } };
};

test('each bad option throws a TypeError that names it and says what it takes', () => {
  const passed: string[] = [];
  for (const [name, values] of BAD) {
    for (const value of values) {
      const label = `${name}: ${typeof value === 'string' ? JSON.stringify(value) : String(value)}`;
      try {
        make(optionsWith(name, value));
        passed.push(`${label} (constructed)`);
      } catch (err) {
        const said = err instanceof Error ? err.message : String(err);
        if (!(err instanceof TypeError) || !said.startsWith(`${name} must be `)) passed.push(`${label} (${err instanceof Error ? err.name : typeof err}: ${said})`);
      }
    }
  }
  assert.deepEqual(passed, [], 'not refused by a TypeError naming the option');
  assert.throws(() => new OcsClient(undefined as unknown as ClientOptions), { name: 'TypeError', message: /^url must be/ }, 'no options at all');
});

test('a misspelt option names itself, as a bad key of the server config does, rather than being ignored', () => {
  assert.throws(() => make({ requestTimeout: 5000 }), { name: 'TypeError', message: /^requestTimeout is not an option/ });
  assert.throws(() => make({ reconnect: { initalMs: 100 } }), { name: 'TypeError', message: /^reconnect\.initalMs is not an option/ });
});

test('the documented defaults and edge values construct', () => {
  const good: Array<Record<string, unknown>> = [
    {},
    { requestTimeoutMs: 10_000, maxQueued: 1000, dedupeWindow: 10_000, heartbeatMs: 15_000, connectTimeoutMs: 10_000, maxFrameBytes: MAX_FRAME_BYTES, maxFrameHeapBytes: MAX_FRAME_HEAP_BYTES },
    { encoding: 'json', autoAck: true, reconnect: { ...DEFAULT_RECONNECT }, random: Math.random, user: 'u', token: 'jwt' },
    { encoding: 'msgpack', autoAck: false, reconnect: false, token: async () => 'jwt' },
    // 0: no heartbeat, no queue while offline, no retry; Infinity: never (client.md).
    { heartbeatMs: 0, maxQueued: 0, reconnect: { maxAttempts: 0, stableMs: 0, factor: 1 } },
    { heartbeatMs: Infinity, connectTimeoutMs: Infinity, requestTimeoutMs: Infinity, maxFrameBytes: Infinity, maxFrameHeapBytes: Infinity },
    { reconnect: { initialMs: Infinity, maxMs: Infinity, soonMs: Infinity, penaltyMs: Infinity, stableMs: Infinity, maxAttempts: Infinity } },
    { requestTimeoutMs: 0.5, connectTimeoutMs: 1, dedupeWindow: 1, maxFrameBytes: 1024, maxFrameHeapBytes: 1024, reconnect: { initialMs: 1, soonMs: 0.5, factor: 1.5 } },
    // Not the largest dedupeWindow (2^24): its three windows' arrays would take 400 MB here.
    { dedupeWindow: 100_000, maxQueued: Number.MAX_SAFE_INTEGER },
    // Absent and undefined are the same: the default.
    { requestTimeoutMs: undefined, reconnect: undefined, encoding: undefined, user: undefined },
  ];
  for (const options of good) assert.doesNotThrow(() => make(options), JSON.stringify(options));
});

test('a delay of Infinity stays Infinity (never), whatever the jitter draws: not NaN, which a timer takes as at once', () => {
  const never = { ...DEFAULT_RECONNECT, initialMs: Infinity, maxMs: Infinity, soonMs: Infinity, penaltyMs: Infinity };
  for (const code of [1006, 1012, 4001, 4029]) {
    for (const attempt of [0, 1]) {
      for (const draw of [0, 0.5]) {
        const decision = decideReconnect(code, attempt, never, () => draw);
        const delay = decision.action === 'retry' ? decision.delayMs : -1;
        // 4001 retries at once the first time, by design.
        if (!(code === 4001 && attempt === 0)) assert.equal(delay, Infinity, `close ${code}, attempt ${attempt}, random ${draw}`);
      }
    }
  }
});

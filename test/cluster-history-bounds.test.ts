/**
 * What one history script may cost Redis, whatever a group keeps (docs/messaging.md, "Presence
 * and history in cluster mode"): a join reads no further back than history.max_replay_bytes, and
 * the ttl and size trims drop at most a bounded number per script, the rest in the next ones,
 * without ever serving what they have not dropped yet. The scripts run directly on a private
 * Redis, each wrapped so that it counts the list entries it reads or removes (LRANGE, LINDEX,
 * LPOP, LTRIM): Redis's own work, counted exactly, not timed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { unpack } from 'msgpackr';
import { HISTORY_APPEND, HISTORY_JOIN, HISTORY_PAGE } from '../src/cluster/history-scripts.js';
import { announceSkip, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';

const skip = announceSkip('cluster-history-bounds.test');
const P = 'hb:';
const EPOCH = 'e0e0e0e0e0e0e0e0';
const T0 = 1_800_000_000_000;
const DATA = JSON.stringify('x'.repeat(400));
/** The largest message a pub makes (the node passes websocket.server.max_payload). */
const MAX_ENTRY = 64 * 1024;

/** The script with `redis.call` shadowed by one that counts the entries it hands back or removes. */
function counting(source: string): string {
  return `local R = redis
local touched = 0
local redis = setmetatable({ call = function(cmd, ...)
  local c, key = string.upper(cmd), ...
  local before = c == 'LTRIM' and R.call('LLEN', key) or 0
  local r = R.call(cmd, ...)
  if c == 'LRANGE' then touched = touched + #r
  elseif (c == 'LINDEX' or c == 'LPOP') and r then touched = touched + 1
  elseif c == 'LTRIM' then touched = touched + before - R.call('LLEN', key) end
  return r
end }, { __index = R })
local function script()
${source}
end
local answer = script()
return { touched, answer }`;
}

interface Rule {
  size: number;
  ttlMs?: number;
  now?: number;
}

describe('one history script costs Redis a bounded amount, whatever the group keeps', { skip }, () => {
  let redis: PrivateRedis;
  let client: Redis;
  let subscriber: Redis;
  const answers = new Map<string, (fields: unknown[]) => void>();
  before(async () => {
    redis = await startPrivateRedis();
    client = redis.client();
    subscriber = new Redis(redis.url);
    await subscriber.subscribe(`${P}answers`);
    subscriber.on('messageBuffer', (_channel: Buffer, message: Buffer) => {
      const fields = unpack(message) as unknown[];
      answers.get(String(fields[1]))?.(fields);
    });
  });
  after(async () => {
    subscriber?.disconnect();
    await redis?.stop();
  });

  /** The prelude's ARGV (history-scripts.ts). */
  function argv(group: string, rule: Rule): Array<string | number> {
    return [P, group, rule.size, rule.ttlMs ?? 0, rule.now ?? T0, EPOCH, 1000, 1e12, ''];
  }

  /** Runs a script counted: the entries it touched and what it returned. */
  async function run(source: string, group: string, rule: Rule, args: Array<string | number>): Promise<{ touched: number; answer: unknown }> {
    const [touched, answer] = (await client.eval(counting(source), 0, ...argv(group, rule), ...args)) as [number, unknown];
    return { touched, answer };
  }

  /** `n` messages appended at `now` (all in one pipeline: the scripts run in order). */
  async function fill(group: string, n: number, rule: Rule, data = DATA): Promise<void> {
    const pipeline = client.pipeline();
    for (let i = 0; i < n; i++) {
      const head = `{"op":"msg","id":"m${i}","from":"u","group":"${group}","data":${data},"pri":0,"ts":${rule.now ?? T0}`;
      pipeline.eval(HISTORY_APPEND, 0, ...argv(group, rule), head, rule.now ?? T0);
    }
    await pipeline.exec();
  }

  let tokens = 0;
  /** A join with `since`: its answer as PUBLISHed, and the entries the script touched. */
  async function join(group: string, rule: Rule, since: number, maxReplay: number) {
    const token = `t${tokens++}`;
    const published = new Promise<unknown[]>((resolve) => answers.set(token, resolve));
    const { touched } = await run(HISTORY_JOIN, group, rule, [since, EPOCH, maxReplay, `${P}answers`, token, MAX_ENTRY]);
    const [, , top, , recovered, frames] = await published;
    const offsets = (frames as string[]).map((f) => (JSON.parse(f) as { offset: number }).offset);
    return { touched, top, recovered, offsets, bytes: (frames as string[]).reduce((sum, f) => sum + Buffer.byteLength(f), 0) };
  }

  /** One page of `history` after `since` (HISTORY_PAGE), counted. */
  async function page(group: string, rule: Rule, since: number, limit: number, maxBytes = 1e9) {
    const { touched, answer } = await run(HISTORY_PAGE, group, rule, [since, limit, maxBytes, MAX_ENTRY]);
    const [top, , more, ...frames] = answer as [number, string, number, ...string[]];
    return { touched, top, more, offsets: frames.map((f) => (JSON.parse(f) as { offset: number }).offset) };
  }

  test('a join with an old `since` reads no further back than max_replay_bytes: 5,000 kept, about 450 bytes each', async () => {
    const rule = { size: 5000 };
    await fill('room.old', 5000, rule);
    const far = await join('room.old', rule, 0, 4096);
    assert.deepEqual([far.recovered, far.offsets, far.top], [0, [], 5000], 'recovered: false');
    assert.ok(far.touched <= 100, `${far.touched} entries read to refuse 5,000 messages that even their offsets alone would not fit`);

    const near = await join('room.old', rule, 4000, 100_000);
    assert.deepEqual([near.recovered, near.offsets], [0, []], '1,000 messages of ~450 bytes exceed 100,000 bytes');
    assert.ok(near.touched <= 100_000 / 400 + 100, `${near.touched} entries read: no more than max_replay_bytes holds, plus one chunk`);
  });

  test('a join that fits gets every message after `since`, in order, across chunks; one byte short, none', async () => {
    const rule = { size: 5000 };
    const fits = await join('room.old', rule, 4750, 1 << 20);
    assert.equal(fits.recovered, 1);
    assert.deepEqual(fits.offsets, Array.from({ length: 250 }, (_, i) => 4751 + i));
    assert.equal(fits.touched, 250, 'only what it replays');
    assert.equal((await join('room.old', rule, 4750, fits.bytes)).recovered, 1, 'exactly max_replay_bytes is replayed');
    assert.equal((await join('room.old', rule, 4750, fits.bytes - 1)).recovered, 0, 'one byte more is not');
  });

  // A review on 2026-12-08: with messages of 60 KB (max_payload is 64 KB by default) each read 100
  // entries, 6 MB, to answer with 4: 13-14 ms of Redis each (a one-off script), so one client at
  // the default rate limit could keep Redis busy alone.
  test('with large messages a join and a page read about max_replay_bytes of them, not a chunk of 100', async () => {
    const rule = { size: 100 };
    await fill('room.big', 100, rule, JSON.stringify('x'.repeat(60_000)));
    const budget = 256 * 1024;
    const fits = Math.floor(budget / 60_000);
    const joined = await join('room.big', rule, 0, budget);
    assert.deepEqual([joined.recovered, joined.offsets], [0, []], '100 messages of 60 KB are past max_replay_bytes');
    assert.ok(joined.touched <= fits + 2, `${joined.touched} entries of 60 KB read to refuse a replay that holds ${fits}`);
    const near = await join('room.big', rule, 100 - fits, budget);
    assert.deepEqual([near.recovered, near.offsets], [1, Array.from({ length: fits }, (_, i) => 101 - fits + i)], 'what fits is replayed');
    const first = await page('room.big', rule, 0, 100, budget);
    assert.deepEqual([first.offsets, first.more], [Array.from({ length: fits }, (_, i) => i + 1), 1]);
    assert.ok(first.touched <= fits + 2, `${first.touched} entries of 60 KB read for a page of ${fits}`);
    const two = await page('room.big', rule, 98, 2, budget);
    assert.deepEqual([two.offsets, two.more, two.touched], [[99, 100], 0, 2], 'the last two: no more');
    const limited = await page('room.big', rule, 10, 2, budget);
    assert.deepEqual([limited.offsets, limited.more], [[11, 12], 1], 'limit 2 of more');
  });

  test('entries past the ttl go at most 1,000 per script, and those left are never served', async () => {
    const rule = { size: 10_000, ttlMs: 1000 };
    await fill('room.ttl', 5000, rule);
    await fill('room.ttl', 10, { ...rule, ttlMs: 0, now: T0 + 5000 }); // (no trim yet)
    const later = { ...rule, now: T0 + 5500 }; // the first 5,000 are past the ttl, the last 10 not
    const first = await page('room.ttl', later, 0, 100);
    assert.deepEqual([first.top, first.offsets, first.more], [5010, Array.from({ length: 10 }, (_, i) => 5001 + i), 0], 'only the 10 young ones');
    // Each entry dropped is read once and removed once; then a binary search and the page.
    assert.ok(first.touched <= 2 * 1000 + 150, `${first.touched} entries touched by one script (5,000 past the ttl)`);
    assert.equal(await client.llen(`${P}hl:room.ttl`), 4010, '1,000 dropped, the rest left for the next scripts');

    const stale = await join('room.ttl', later, 2000, 1 << 20);
    assert.deepEqual([stale.recovered, stale.offsets], [0, []], 'a message after `since` is past the ttl: not kept');
    const young = await join('room.ttl', later, 5000, 1 << 20);
    assert.deepEqual([young.recovered, young.offsets], [1, Array.from({ length: 10 }, (_, i) => 5001 + i)]);
    assert.ok(stale.touched <= 2150 && young.touched <= 2150, `${stale.touched}, ${young.touched} entries touched`);

    for (let i = 0; i < 3; i++) await page('room.ttl', later, 0, 100);
    assert.equal(await client.llen(`${P}hl:room.ttl`), 10, 'the later scripts dropped the rest');
    const kept = (await client.lrange(`${P}hl:room.ttl`, 0, -1)).reduce((sum, e) => sum + Buffer.byteLength(e), 0);
    assert.equal(Number(await client.hget(`${P}hb`, 'room.ttl')), kept, 'and counted off the bytes of what they dropped');
  });

  // The review of the bound: reading 100 entries whatever was due made an append of 60 KB 22x dearer.
  test('an append to a group with a ttl reads one entry when none is due, and about two per entry due', async () => {
    const rule = { size: 1000, ttlMs: 1000 };
    await fill('room.live', 200, rule);
    const head = (i: number): string => `{"op":"msg","id":"l${i}","from":"u","group":"room.live","data":1,"pri":0,"ts":0`;
    const quiet = await run(HISTORY_APPEND, 'room.live', { ...rule, now: T0 + 500 }, [head(0), T0 + 500]);
    assert.equal(quiet.touched, 1, 'LINDEX 0 alone: none is past the ttl');
    // 200 appended at T0 fall due together at T0 + 1000: one script drops them all with a few looks, not 100 reads per look.
    const due = await run(HISTORY_APPEND, 'room.live', { ...rule, now: T0 + 1001 }, [head(1), T0 + 1001]);
    assert.ok(due.touched <= 2 * 200 + 20, `${due.touched} entries touched to drop 200`);
    assert.equal(await client.llen(`${P}hl:room.live`), 2, 'the two young ones kept');
  });

  test('a rule whose size shrank drops at most 1,000 per script and serves only its newest `size`', async () => {
    await fill('room.shrunk', 3000, { size: 3000 });
    const { touched } = await run(HISTORY_APPEND, 'room.shrunk', { size: 10 }, ['{"op":"msg","id":"n","from":"u","group":"room.shrunk","data":1,"pri":0,"ts":0', T0]);
    assert.ok(touched <= 1000, `${touched} entries dropped by one append`);
    const newest = await page('room.shrunk', { size: 10 }, 0, 100);
    assert.deepEqual(newest.offsets, Array.from({ length: 10 }, (_, i) => 2992 + i));
    assert.equal((await join('room.shrunk', { size: 10 }, 2980, 1 << 20)).recovered, 0, 'older than the newest 10: not kept');
  });
});

/**
 * A user's queue in Redis is indexed by state (P qu:USER waiting, P qf:USER in flight, P
 * qs:USER the scheduled count; scripts.ts PRELUDE), so that a connection (CONNECT) and a pump
 * read what waits and what is in flight, never the whole queue: before, a user with 10,000
 * far-future scheduled messages made each of its reconnects cost Redis a read of all of them.
 * A queue an older version wrote (no index) is indexed at its user's next connection. Real
 * nodes on a private Redis.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { member, type TestClient } from './helpers/client.js';
import { nextMsgs, untilTrue } from './helpers/messaging.js';
import { announceSkip, nodeConfig, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { startInProcess } from './helpers/server.js';
import type { RunningServer } from '../src/index.js';
import { RECLAIM } from '../src/cluster/reclaim-script.js';

const skip = announceSkip('cluster-queue-index.test');
const P = 'qix:';
const HOUR = 3_600_000;

/** One node with `delivery` settings on a Redis of its own, for the describe() that calls this; read them inside its tests. */
function nodeOnPrivateRedis(delivery: Record<string, unknown>): { reader: Redis; node: RunningServer } {
  let redis: PrivateRedis | undefined;
  const handles = {} as { reader: Redis; node: RunningServer };
  before(async () => {
    redis = await startPrivateRedis();
    handles.reader = new Redis(redis.url);
    handles.node = await startInProcess(nodeConfig(redis.url, P, 1, { websocket: { delivery } }));
  });
  after(async () => {
    handles.reader?.disconnect();
    await handles.node?.close();
    await redis?.stop();
  });
  return handles;
}

async function sent(client: TestClient, frame: Record<string, unknown>, ref: string): Promise<string> {
  client.send({ ...frame, ref });
  const answer = await client.next((f) => f.ref === ref);
  assert.equal(answer.op, 'ack');
  return answer.id as string;
}

describe("a user's queue in Redis is indexed by state", { skip, timeout: 60_000 }, () => {
  const on = nodeOnPrivateRedis({ ack_timeout: 30, max_backoff: 60, max_inflight_per_user: 2 });

  /** What the index says of `user`, and what the queue's messages say, by state. */
  async function both(user: string): Promise<{ index: Record<string, string[] | number>; queue: Record<string, string[] | number> }> {
    const ids = await on.reader.zrange(`${P}q:u:${user}`, '0', '-1');
    const states = await Promise.all(ids.map((id) => on.reader.hget(`${P}m:${id}`, 'state')));
    const of = (state: string): string[] => ids.filter((_, i) => states[i] === state);
    return {
      index: { w: await on.reader.zrange(`${P}qu:${user}`, '0', '-1'), f: await on.reader.zrange(`${P}qf:${user}`, '0', '-1'), s: Number((await on.reader.get(`${P}qs:${user}`)) ?? 0) },
      queue: { w: of('w'), f: of('f'), s: of('s').length },
    };
  }

  test('the index follows each message through scheduled, waiting, in flight, acknowledged and the window', async () => {
    const sender = await member(on.node.port, 'sender');
    for (let n = 0; n < 3; n++) await sent(sender, { op: 'send', to: 'ann', data: { later: n }, at: Date.now() + HOUR }, `s${n}`);
    for (let n = 0; n < 4; n++) await sent(sender, { op: 'send', to: 'ann', data: { now: n } }, `n${n}`);
    let seen = await both('ann');
    assert.deepEqual(seen.index, seen.queue);
    assert.deepEqual([(seen.index.w as string[]).length, seen.index.s], [4, 3]);
    // Two go (the window holds 2), two wait; an ack lets the third go.
    const ann = await member(on.node.port, 'ann');
    assert.equal(ann.welcome.pending, 4);
    const first = await nextMsgs(ann, 2);
    seen = await both('ann');
    assert.deepEqual(seen.index, seen.queue);
    assert.deepEqual([(seen.index.f as string[]).length, (seen.index.w as string[]).length], [2, 2]);
    ann.send({ op: 'ack', id: first[0]!.id });
    await nextMsgs(ann, 1);
    seen = await both('ann');
    assert.deepEqual(seen.index, seen.queue);
    assert.deepEqual([(seen.index.f as string[]).length, (seen.index.w as string[]).length, seen.index.s], [2, 1, 3]);
    // A second connection is told of what is in flight, not of the scheduled ones.
    const again = await member(on.node.port, 'ann');
    assert.equal(again.welcome.pending, 3);
    for (const c of [sender, ann, again]) c.close();
  });

  test("a reconnect of a user with 2,000 scheduled messages reads none of them (Redis's own count of HGET and HMGET calls)", async () => {
    const sender = await member(on.node.port, 'planner');
    for (let n = 0; n < 2000; n++) sender.send({ op: 'send', to: 'bob', data: n, at: Date.now() + HOUR, ref: `p${n}` });
    await untilTrue('all 2,000 stored', async () => (await on.reader.zcard(`${P}q:u:bob`)) === 2000);
    (await member(on.node.port, 'bob')).close(); // the first connection indexes the queue if need be
    const reads = async (): Promise<number> => {
      const stats = await on.reader.info('commandstats');
      return [...stats.matchAll(/cmdstat_(hget|hmget):calls=(\d+)/g)].reduce((sum, m) => sum + Number(m[2]), 0);
    };
    const before = await reads();
    for (let n = 0; n < 10; n++) {
      const bob = await member(on.node.port, 'bob');
      assert.equal(bob.welcome.pending, 0);
      bob.close();
    }
    const perConnect = ((await reads()) - before) / 10;
    assert.ok(perConnect < 50, `${perConnect} hash reads per connection`);
    sender.close();
  });

  test("RECLAIM (a claim whose answer was lost) finds the claim's messages among the user's in flight, past the scheduled ones", async () => {
    const sender = await member(on.node.port, 'sender-cy');
    for (let n = 0; n < 3; n++) await sent(sender, { op: 'send', to: 'cy', data: n, at: Date.now() + HOUR, pri: 3 }, `c${n}`);
    for (let n = 0; n < 2; n++) await sent(sender, { op: 'send', to: 'cy', data: n }, `d${n}`);
    const cy = await member(on.node.port, 'cy');
    const claimed = await nextMsgs(cy, 2);
    const dt = await on.reader.hget(`${P}m:${claimed[0]!.id}`, 'dt');
    assert.equal(await on.reader.hget(`${P}m:${claimed[1]!.id}`, 'dt'), dt, 'one claim (the CONNECT) took both');
    assert.equal(await on.reader.eval(RECLAIM, 0, P, 'u:cy', dt!, Date.now(), ''), 2);
    for (const c of [sender, cy]) c.close();
  });

  test("RECLAIM of a group's claim reads the `any` messages that claim took (P qd:GROUP, by claim time), not the 200 waiting (Redis's count of hash reads)", async () => {
    const sender = await member(on.node.port, 'sender-crowd');
    for (let n = 0; n < 200; n++) sender.send({ op: 'any', group: 'crowd', data: n, ref: `a${n}` });
    await sender.next((f) => f.ref === 'a199');
    const worker = await member(on.node.port, 'worker', ['crowd']);
    const claimed = await nextMsgs(worker, 2);
    const dt = await on.reader.hget(`${P}m:${claimed[0]!.id}`, 'dt');
    assert.deepEqual((await on.reader.zrange(`${P}qd:crowd`, '0', '-1')).sort(), claimed.map((m) => m.id as string).sort(), 'the two in flight, indexed');
    const hashReads = async (): Promise<number> => [...(await on.reader.info('commandstats')).matchAll(/cmdstat_(hget|hmget):calls=(\d+)/g)].reduce((sum, m) => sum + Number(m[2]), 0);
    const before = await hashReads();
    assert.equal(await on.reader.eval(RECLAIM, 0, P, 'g:crowd', dt!, Date.now(), ''), 2);
    assert.ok((await hashReads()) - before <= 4, 'one read per message of the claim');
    for (const m of claimed) worker.send({ op: 'ack', id: m.id });
    for (const c of [sender, worker]) c.close();
  });

  test('a queue an older version wrote (no index) is indexed at its next connection, and delivered', async () => {
    const fields = (seq: number, state: string) => ({ target: 'u:old', from: 'x', group: '', data: JSON.stringify(seq), pri: 1, ts: 1, at: 0, attempts: 0, strategy: '', state, holder: '', bytes: 1, seq });
    for (const [id, seq, state] of [['old-1', 1, 'w'], ['old-2', 2, 'w'], ['old-3', 3, 's']] as const) {
      await on.reader.hset(`${P}m:${id}`, fields(seq, state));
      await on.reader.zadd(`${P}q:u:old`, 2e13 + seq, id);
    }
    await on.reader.zadd(`${P}q:u:old`, 2e13 + 4, 'gone-4'); // an entry whose message is gone
    const old = await member(on.node.port, 'old');
    assert.deepEqual((await nextMsgs(old, 2)).map((m) => m.data), [1, 2]);
    const seen = await both('old');
    assert.deepEqual(seen.index, seen.queue);
    assert.deepEqual(seen.index, { w: [], f: ['old-1', 'old-2'], s: 1 });
    assert.equal(await on.reader.zscore(`${P}q:u:old`, 'gone-4'), null);
    old.close();
  });
});

describe("the mark that a user's messages wait for room in its window (P wb:USER)", { skip, timeout: 60_000 }, () => {
  const on = nodeOnPrivateRedis({ ack_timeout: 0.2, max_backoff: 0.4, max_attempts: 2, max_inflight_per_user: 2, ttl: 2 });

  test('goes with the last message of a user who filled its window and never came back (it stayed for ever, one key per such user)', async () => {
    const sender = await member(on.node.port, 'sender');
    for (let n = 0; n < 3; n++) await sent(sender, { op: 'send', to: 'gone', data: n }, `g${n}`);
    const gone = await member(on.node.port, 'gone');
    await nextMsgs(gone, 2);
    assert.equal(await on.reader.exists(`${P}wb:gone`), 1, 'the third waits for room');
    gone.close();
    // Never acknowledged: dead letters after their attempts, or expired after ttl.
    await untilTrue('the messages gone', async () => (await on.reader.exists(`${P}q:u:gone`)) === 0);
    assert.equal(await on.reader.exists(`${P}wb:gone`), 0);
    sender.close();
  });
});

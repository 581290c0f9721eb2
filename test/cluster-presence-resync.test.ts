/**
 * A node writing its presence again after a Redis outage (ClusterPresence.rewrite) costs Redis
 * what the node has and had, not what its groups hold: before, each group was read whole once
 * per node (SYNC_GROUP's HGETALL), so a group of 100,000 members stalled Redis at every node's
 * resync. What it had comes from its own key list; each script takes at most a chunk of member
 * connections, and each MULTI a chunk of users (one of 100,000 users held Redis 0.8 s); the
 * watchers still hear only real changes. On a private Redis, counted with
 * MONITOR (Redis's own work, not timed).
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { Keys } from '../src/cluster/keys.js';
import { ClusterPresence, LocalPresence } from '../src/cluster/presence.js';
import { ScriptRunner } from '../src/cluster/script-runner.js';
import { sleep } from './helpers/broker.js';
import { announceSkip, presenceChanges, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { commandsDuring, memberReads } from './helpers/script-work.js';

const skip = announceSkip('cluster-presence-resync.test');
const P = 'rs:';
const OTHERS = 20_000;

/** The member connections (fields of P pg:) each script of `ran` wrote or looked up. */
function membersPerScript(ran: string[][]): number[] {
  const scripts: number[] = [];
  for (const [name, key] of ran) {
    if (name === 'EVALSHA' || name === 'EVAL') scripts.push(0);
    else if ((name === 'HSET' || name === 'HGET') && key!.startsWith(`${P}pg:`) && scripts.length > 0) scripts[scripts.length - 1]!++;
  }
  return scripts;
}

/** How many commands each MULTI ... EXEC of `ran` held (a transaction runs alone in Redis). */
function commandsPerTransaction(ran: string[][]): number[] {
  const sizes: number[] = [];
  let open = -1;
  for (const [name] of ran) {
    if (name === 'MULTI') open = 0;
    else if (name === 'EXEC') {
      sizes.push(open);
      open = -1;
    } else if (open >= 0) open++;
  }
  return sizes;
}

describe("a node's presence written again after an outage", { skip, timeout: 60_000 }, () => {
  let server: PrivateRedis;
  let redis: Redis;
  let listener: Redis;
  let told: string[];
  before(async () => {
    server = await startPrivateRedis();
    redis = new Redis(server.url);
    listener = await presenceChanges(server.url, P, (group, change) => told.push(`${group} ${change}`));
  });
  after(async () => {
    listener?.disconnect();
    redis?.disconnect();
    await server?.stop();
  });

  let presence: ClusterPresence;
  beforeEach(async () => {
    await redis.flushall();
    told = [];
    presence = new ClusterPresence(redis, new ScriptRunner(redis), new Keys(P), 'me', 3000);
    // Another node holds OTHERS member connections of group "big".
    const other = new ClusterPresence(redis, new ScriptRunner(redis), new Keys(P), 'other', 3000);
    const crowd = new LocalPresence();
    for (let i = 0; i < OTHERS; i++) connect(crowd, `o${i}`, `u${i}`, ['big']);
    await other.rewrite(crowd);
    await sleep(50);
    told = [];
  });

  function connect(local: LocalPresence, sid: string, user: string, groups: string[]): void {
    local.online({ sid, user, shard: 0, weight: 1, groups: new Set(), watching: null });
    for (const group of groups) local.join(sid, group);
  }

  async function fieldsOf(group: string): Promise<Record<string, string>> {
    const all = await redis.hgetall(`${P}pg:${group}`);
    return Object.fromEntries(Object.entries(all).filter(([field]) => field.startsWith('me\n')));
  }

  test('reads no group, only changes what changed, and tells only real joins and leaves', async () => {
    const before = new LocalPresence();
    connect(before, 'a', 'ann', ['big', 'small']);
    connect(before, 'b', 'bob', ['big']);
    connect(before, 'd', 'cat', ['big', 'gone']);
    await presence.rewrite(before);
    await sleep(50);
    told = [];

    // During the outage: ann changed connections (a -> c), cat left, dan came; nobody is in "gone" now.
    const now = new LocalPresence();
    connect(now, 'b', 'bob', ['big']);
    connect(now, 'c', 'ann', ['big', 'small']);
    connect(now, 'e', 'dan', ['big']);
    const ran = await commandsDuring(server.url, () => presence.rewrite(now));
    await sleep(50);

    assert.deepEqual(memberReads(ran, `${P}pg:`), [], 'no group read whole');
    assert.ok(Math.max(...membersPerScript(ran)) <= 3, 'each script touches only the fields it names');
    assert.deepEqual(await fieldsOf('big'), { 'me\nb': 'bob\n1', 'me\nc': 'ann\n1', 'me\ne': 'dan\n1' });
    assert.deepEqual(await fieldsOf('small'), { 'me\nc': 'ann\n1' });
    assert.equal(await redis.exists(`${P}pg:gone`), 0);
    assert.equal(await redis.hlen(`${P}pg:big`), OTHERS + 3, "the other node's members all stay");
    assert.deepEqual(told.sort(), ['big +dan', 'big -cat', 'gone -cat'], 'ann only changed connections: no news');
    const listed = await redis.smembers(`${P}nk:me`);
    assert.ok(!listed.includes(`${P}pg:gone`), 'the key list drops the group the node has no member of');
    assert.ok(!listed.some((key) => key.endsWith('\na') || key.endsWith('\nd')), 'nor lists the connections that went');
    assert.equal(await redis.hget(`${P}pc:big`, 'ann'), '1');
  });

  test('a group with many member connections on this node is written a bounded chunk per script', async () => {
    const before = new LocalPresence();
    for (let i = 0; i < 1200; i++) connect(before, `x${i}`, `v${i}`, ['big']);
    await presence.rewrite(before);
    const now = new LocalPresence();
    for (let i = 600; i < 1800; i++) connect(now, `x${i}`, `v${i}`, ['big']);
    await sleep(100);
    told = [];
    const ran = await commandsDuring(server.url, () => presence.rewrite(now));
    await sleep(50);

    const perScript = membersPerScript(ran);
    assert.ok(Math.max(...perScript) <= 500, `at most 500 member connections per script (${perScript.join(', ')})`);
    const perTransaction = commandsPerTransaction(ran);
    assert.ok(perTransaction.length > 1 && Math.max(...perTransaction) <= 2 * 500, `users written at most 500 per MULTI (${perTransaction.join(', ')})`);
    assert.equal(Object.keys(await fieldsOf('big')).length, 1200);
    assert.equal(told.filter((c) => c.startsWith('big +')).length, 600);
    assert.equal(told.filter((c) => c.startsWith('big -')).length, 600);
  });
});

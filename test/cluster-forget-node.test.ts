/**
 * Forgetting a node (FORGET_NODE: a node died, or drains at a pm2 reload) is done a bounded
 * chunk at a time, reading only the node's own member connections: before, one script did the
 * whole node and read each of its groups whole, and a killed node whose clients had joined
 * 60,000 groups stalled every node for 1.3 s. The node counts as gone from the first call; a
 * forget left midway is finished by any node's next heartbeat; two nodes forgetting one node at
 * once tell each leave once; a node's key list as the previous version wrote it is still
 * forgotten. The scripts run on a private Redis, on keys written by the real scripts.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { FORGET_CHUNK, FORGET_NODE } from '../src/cluster/forget-node-script.js';
import { Keys } from '../src/cluster/keys.js';
import { ClusterPresence } from '../src/cluster/presence.js';
import { SYNC_GROUP } from '../src/cluster/presence-scripts.js';
import { ScriptRunner } from '../src/cluster/script-runner.js';
import { sleep } from './helpers/broker.js';
import { announceSkip, presenceChanges, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { commandsDuring, memberReads } from './helpers/script-work.js';

const skip = announceSkip('cluster-forget-node.test');
const P = 'fn:';
const GROUPS = 250;
const OTHERS = 20;
const TTL = 3000;

describe('forgetting a node, a chunk at a time', { skip, timeout: 60_000 }, () => {
  let server: PrivateRedis;
  let redis: Redis;
  let leaves: Map<string, number>;
  let listener: Redis;
  before(async () => {
    server = await startPrivateRedis();
    redis = new Redis(server.url);
    listener = await presenceChanges(server.url, P, (group, change) => {
      if (change.startsWith('-')) leaves.set(`${group} ${change}`, (leaves.get(`${group} ${change}`) ?? 0) + 1);
    });
  });
  after(async () => {
    listener?.disconnect();
    redis?.disconnect();
    await server?.stop();
  });

  /**
   * Node "dead" (heartbeat a minute old) has one connection of ann in each of GROUPS groups, and
   * ann's user presence; node "live" has OTHERS connections of other users in each group.
   */
  beforeEach(async () => {
    await redis.flushall();
    leaves = new Map();
    const now = Date.now();
    await redis.zadd(`${P}nodes`, now, 'live', now - 60_000, 'dead');
    await redis.hset(`${P}pu:ann`, 'dead', 1);
    await redis.sadd(`${P}nk:dead`, `${P}pu:ann`);
    for (let g = 0; g < GROUPS; g++) {
      const others: Array<string | number> = [];
      for (let i = 0; i < OTHERS; i++) others.push(`s${i}`, `u${i}`, 1);
      await redis.eval(SYNC_GROUP, 0, P, 'live', `g${g}`, 0, OTHERS, ...others);
      await redis.eval(SYNC_GROUP, 0, P, 'dead', `g${g}`, 0, 1, 'd1', 'ann', 1);
    }
  });

  const forgetOnce = (client = redis): Promise<unknown> => client.eval(FORGET_NODE, 0, P, 'dead', FORGET_CHUNK, Date.now() - TTL);
  const deadFieldsLeft = async (): Promise<number> => {
    let n = 0;
    for (let g = 0; g < GROUPS; g++) n += await redis.hexists(`${P}pg:g${g}`, 'dead\nd1');
    return n;
  };
  const assertForgotten = async (): Promise<void> => {
    assert.equal(await deadFieldsLeft(), 0, 'no field of the dead node left');
    for (let g = 0; g < GROUPS; g++) {
      assert.equal(await redis.hlen(`${P}pg:g${g}`), OTHERS, "the live node's members all stay");
      assert.equal(await redis.hget(`${P}pc:g${g}`, 'ann'), null);
      assert.equal(await redis.hget(`${P}pc:g${g}`, 'u0'), '1');
    }
    assert.equal(await redis.hget(`${P}pu:ann`, 'dead'), null);
    assert.equal(await redis.exists(`${P}nk:dead`), 0);
    assert.equal(await redis.scard(`${P}nf`), 0, 'no forget left under way');
    await sleep(50);
    assert.equal(leaves.size, GROUPS, 'ann left each group');
    assert.deepEqual(new Set(leaves.values()), new Set([1]), 'each leave told once');
  };

  test('one call takes at most FORGET_CHUNK entries, reads none of the other nodes\' members, says "more" and leaves the rest', async () => {
    const listed = await redis.scard(`${P}nk:dead`);
    let answer: unknown;
    const ran = await commandsDuring(server.url, async () => (answer = await forgetOnce()));
    assert.equal(answer, 'more');
    assert.deepEqual(memberReads(ran, `${P}pg:`), [], 'no group read whole');
    const taken = listed - (await redis.scard(`${P}nk:dead`));
    assert.ok(taken > 0 && taken <= FORGET_CHUNK, `took ${taken} entries`);
    assert.ok((await deadFieldsLeft()) > GROUPS - FORGET_CHUNK - 1, 'the rest of its members are left for later calls');
    assert.equal(await redis.zscore(`${P}nodes`, 'dead'), null, 'gone from P nodes at the first call');
    assert.equal(await redis.sismember(`${P}nf`, 'dead'), 1, 'listed as being forgotten');

    let calls = 1;
    while ((await forgetOnce()) === 'more') calls++;
    assert.ok(calls >= Math.ceil((2 * GROUPS + 1) / FORGET_CHUNK) - 1, `${calls + 1} calls`);
    await assertForgotten();
  });

  test("a forget left midway (its node stopped) is finished by another node's next heartbeat", async () => {
    assert.equal(await forgetOnce(), 'more');
    const other = new ClusterPresence(redis, new ScriptRunner(redis), new Keys(P), 'live', TTL);
    await other.heartbeat();
    for (let i = 0; i < 200 && (await redis.sismember(`${P}nf`, 'dead')) === 1; i++) await sleep(25);
    await assertForgotten();
  });

  test('two nodes forgetting the same node at once tell each leave once', async () => {
    const second = new Redis(server.url);
    try {
      const one = new ClusterPresence(redis, new ScriptRunner(redis), new Keys(P), 'live', TTL);
      const two = new ClusterPresence(second, new ScriptRunner(second), new Keys(P), 'live2', TTL);
      await Promise.all([one.forgetNode('dead', Date.now() - TTL), two.forgetNode('dead', Date.now() - TTL)]);
    } finally {
      second.disconnect();
    }
    await assertForgotten();
  });

  test('a node that comes back while it is being forgotten is left alone from then on', async () => {
    assert.equal(await forgetOnce(), 'more');
    const left = await deadFieldsLeft();
    await redis.zadd(`${P}nodes`, Date.now(), 'dead'); // its heartbeat found itself gone: it writes its members again
    assert.equal(await forgetOnce(), 'done');
    assert.equal(await deadFieldsLeft(), left);
    assert.equal(await redis.scard(`${P}nf`), 0);
  });

  test('a key list as the previous version wrote it (the groups only) is forgotten all the same', async () => {
    // What the previous JOIN wrote: "P pg:GROUP" in the key list, no entry per connection, no mark.
    await redis.del(`${P}nk:dead`);
    for (let g = 0; g < GROUPS; g++) await redis.sadd(`${P}nk:dead`, `${P}pg:g${g}`);
    await redis.sadd(`${P}nk:dead`, `${P}pu:ann`);
    let calls = 0;
    while ((await forgetOnce()) === 'more') calls++;
    assert.ok(calls > 0, 'in more than one call');
    await assertForgotten();
  });
});

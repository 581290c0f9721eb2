/**
 * A `presence` answer in cluster mode (PRESENCE_ANSWER) costs Redis a read of the group's users
 * (at most websocket.presence.max_list), not of their member connections (up to 100 each):
 * before, a group of 30 users with 100 connections each cost 2.1 ms of Redis per answer, and
 * five clients at the default rate limit saturated it. A dead node's members are still left out
 * of a list as soon as its heartbeat is older than presence_ttl, by reading the connections of a
 * group of at most PRESENCE_SCAN_FACTOR x max_list of them, or in a larger group by counting each
 * listed user's connections on that node in the members index (with several dead nodes, only
 * on those its presence names); past that budget the list names that node's users until it is
 * forgotten, as its totals count them. The script runs on a
 * private Redis, on keys written by the real scripts.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import { PRESENCE_ANSWER, PRESENCE_SCAN_FACTOR, SYNC_GROUP } from '../src/cluster/presence-scripts.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { announceSkip } from './helpers/redis.js';
import { commandsDuring, memberReads } from './helpers/script-work.js';

const skip = announceSkip('cluster-presence-answer.test');
const P = 'pa:';
const TTL = 3000;

describe('a presence answer in cluster mode', { skip, timeout: 60_000 }, () => {
  const cluster = clusterFixture({ store: true });
  beforeEach(async () => {
    await cluster.store.flushall();
    await cluster.store.zadd(`${P}nodes`, Date.now(), 'live');
  });

  /** `users` users with `each` member connections of `group` on `node`. */
  const members = async (node: string, group: string, users: string[], each: number): Promise<void> => {
    const args: Array<string | number> = [];
    for (const user of users) for (let i = 0; i < each; i++) args.push(`${user}.${i}`, user, 1);
    await cluster.store.eval(SYNC_GROUP, 0, P, node, group, 0, args.length / 3, ...args);
  };
  /** PRESENCE_ANSWER's list as user -> connections (null: totals only), and the commands it ran. */
  const answer = async (group: string, maxList: number): Promise<{ users: Map<string, number> | null; ran: string[][] }> => {
    let out: Array<string | number> = [];
    const ran = await commandsDuring(cluster.redis.url, async () => {
      out = (await cluster.store.eval(PRESENCE_ANSWER, 0, P, group, maxList, 0, Date.now() - TTL)) as Array<string | number>;
    });
    if (out[0] !== -1) return { users: null, ran };
    const users = new Map<string, number>();
    for (let i = 2; i < out.length; i += 2) users.set(String(out[i]), Number(out[i + 1]));
    return { users, ran };
  };
  const names = (n: number, stem: string): string[] => Array.from({ length: n }, (_, i) => `${stem}${i}`);

  test("lists 30 users with 100 connections each from the users' counts, reading none of the 3,000 connections", async () => {
    await members('live', 'big', names(30, 'u'), 100);
    const { users, ran } = await answer('big', 1000);
    assert.equal(users?.size, 30);
    assert.deepEqual(new Set(users!.values()), new Set([100]));
    assert.deepEqual(memberReads(ran, `${P}pg:`), [], 'no member connection read');
    assert.ok(ran.length <= 8, `${ran.length} commands`);
  });

  test('leaves out a node whose heartbeat is older than presence_ttl, at once, in a group of a few connections', async () => {
    await cluster.store.zadd(`${P}nodes`, Date.now() - 60_000, 'dead');
    await members('live', 'team', ['ann'], 2);
    await members('dead', 'team', ['ann', 'bob'], 1);
    const { users } = await answer('team', 1000);
    assert.deepEqual([...users!], [['ann', 2]]);
  });

  test('leaves out a node being forgotten, in a group of a few connections', async () => {
    await cluster.store.sadd(`${P}nf`, 'gone'); // out of P nodes, its fields not all deleted yet
    await members('live', 'team', ['ann'], 1);
    await members('gone', 'team', ['bob'], 1);
    const { users } = await answer('team', 1000);
    assert.deepEqual([...users!], [['ann', 1]]);
  });

  test(`with a dead node not yet forgotten, a group of more than ${PRESENCE_SCAN_FACTOR} x max_list connections leaves its part out too, counting, not reading, connections`, async () => {
    await cluster.store.zadd(`${P}nodes`, Date.now() - 60_000, 'dead', Date.now(), 'deadly');
    await members('live', 'crowd', names(5, 'u'), 10);
    await members('dead', 'crowd', ['bob', 'u0'], 3);
    await members('deadly', 'crowd', ['bob'], 1); // alive, and its name begins with the dead node's
    const { users, ran } = await answer('crowd', 10);
    assert.deepEqual(
      [...users!].sort(),
      [['bob', 1], ['u0', 10], ['u1', 10], ['u2', 10], ['u3', 10], ['u4', 10]],
    );
    assert.deepEqual(memberReads(ran, `${P}pg:`), [], 'no member connection read');
    assert.deepEqual(ran.filter(([name]) => name === 'ZRANGEBYLEX'), [], 'nor listed from the index');
  });

  /** `user`'s connections per node, as a connection's CONNECT writes them (P pu:USER). */
  const online = async (user: string, counts: Record<string, number>): Promise<void> => {
    await cluster.store.hset(`${P}pu:${user}`, counts);
  };

  test('with more dead nodes than it can count every user on, it counts each user only on the dead nodes its presence names', async () => {
    for (const node of ['d1', 'd2', 'd3', 'd4', 'd5']) await cluster.store.zadd(`${P}nodes`, Date.now() - 60_000, node);
    await members('live', 'crowd', names(10, 'u'), 5);
    for (const user of names(10, 'u')) await online(user, { live: 5 });
    await members('d1', 'crowd', ['bob'], 1);
    await members('d2', 'crowd', ['u0'], 2);
    await online('bob', { d1: 1 });
    await online('u0', { live: 5, d2: 2 });
    // 11 users x 5 dead nodes is past the budget (4 x 11): before, bob (on a dead node only) was named.
    const { users, ran } = await answer('crowd', 11);
    assert.equal(users!.has('bob'), false);
    assert.equal(users!.get('u0'), 5);
    assert.equal(ran.filter(([name]) => name === 'ZLEXCOUNT').length, 2, 'one count per user and dead node it is on');
    assert.deepEqual(memberReads(ran, `${P}pg:`), [], 'no member connection read');
  });

  test('with 200 dead nodes it reads each listed user\'s presence whole, not one field per dead node: the budget bounds the work', async () => {
    const dead = names(200, 'dead');
    for (const node of dead) await cluster.store.zadd(`${P}nodes`, Date.now() - 60_000, node);
    await members('live', 'crowd', names(100, 'u'), 5);
    for (const user of names(100, 'u')) await online(user, { live: 5 });
    const { users, ran } = await answer('crowd', 100);
    assert.equal(users!.size, 100);
    // Before, one HMGET per user naming all 200 dead nodes: 20,000 fields against a budget of 400 steps.
    const fieldsAsked = ran.filter(([name, key]) => name === 'HMGET' && key!.startsWith(`${P}pu:`)).reduce((sum, args) => sum + args.length - 2, 0);
    assert.equal(fieldsAsked, 0);
    assert.equal(ran.filter(([name, key]) => name === 'HGETALL' && key!.startsWith(`${P}pu:`)).length, 100, 'one read of each user\'s presence');
  });

  test('past even that budget the list names the dead nodes\' users, as the totals do', async () => {
    const dead = names(50, 'd');
    for (const node of dead) await cluster.store.zadd(`${P}nodes`, Date.now() - 60_000, node);
    await members('live', 'crowd', names(10, 'u'), 5);
    await members('d0', 'crowd', ['bob'], 1);
    // Every user on every dead node: 1 + 50 steps for the first user already, past 4 x 11.
    const everywhere = Object.fromEntries(dead.map((node) => [node, 1]));
    for (const user of [...names(10, 'u'), 'bob']) await online(user, { live: 5, ...everywhere });
    const { users } = await answer('crowd', 11);
    assert.equal(users!.get('bob'), 1);
  });
});

/**
 * The index an `any` picks its member from in cluster mode (src/cluster/any-index-scripts.ts):
 * the strategies walk it in rotation order from after the member picked last, a member without
 * room leaves it (its user marked) until its window frees, and what a missed event or an older
 * version left behind is put right. Real nodes on a private Redis, which the tests read.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { member, type Frame, type TestClient } from './helpers/client.js';
import { until } from './helpers/messaging.js';
import { announceSkip, nodeConfig, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { startInProcess } from './helpers/server.js';
import type { RunningServer } from '../src/index.js';

const skip = announceSkip('cluster-any-index.test');
const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

type Named = TestClient & { user: string };

/** A private Redis and one node on it (keys under `prefix`), set up for the tests of one describe, and what they read it with. */
function rig(prefix: string, delivery: Record<string, unknown>) {
  const t = {} as { redis: PrivateRedis; reader: Redis; node: RunningServer; boss: TestClient };
  before(async () => {
    t.redis = await startPrivateRedis();
    t.reader = new Redis(t.redis.url);
    t.node = await startInProcess(nodeConfig(t.redis.url, prefix, 1, { websocket: { delivery: { ack_timeout: 30, max_backoff: 60, ...delivery } } }));
    t.boss = await member(t.node.port, 'boss');
  });
  after(async () => {
    t.boss?.close();
    t.reader?.disconnect();
    await t.node?.close();
    await t.redis?.stop();
  });
  return {
    t,
    /** The users of the index entries (user\nnode\nsid) of P `key`. */
    usersIn: async (key: string): Promise<string[]> => (await t.reader.zrange(`${prefix}${key}`, '0', '-1')).map((name) => name.split('\n')[0]!),
    /** Hash reads Redis has done so far: a pick reads one window (and more) per member it visits. */
    hashReads: async (): Promise<number> => {
      const stats = await t.reader.info('commandstats');
      return [...stats.matchAll(/cmdstat_(hget|hmget|hgetall):calls=(\d+)/g)].reduce((sum, m) => sum + Number(m[2]), 0);
    },
  };
}
const closeAll = (clients: TestClient[]): void => clients.forEach((c) => c.close());

describe('the members index of `any` in cluster mode (config weights: w-heavy 3)', { skip, timeout: 60_000 }, () => {
  const { t, usersIn, hashReads } = rig('aidx:', { weights: { 'w-heavy': 3 } });

  const join = async (users: string[], group: string): Promise<Named[]> =>
    Promise.all(users.map(async (user) => Object.assign(await member(t.node.port, user, [group]), { user })));
  /** Sends one `any` and answers which member got it (and the message), taking it from that member's frames. */
  const anyTo = async (members: Named[], group: string, strategy?: string): Promise<[string, Frame]> => {
    const ref = `r-${Math.random()}`;
    t.boss.send({ op: 'any', group, data: ref, ref, ...(strategy ? { strategy } : {}) });
    assert.equal((await t.boss.next((f) => f.ref === ref)).op, 'ack');
    return until(() => {
      for (const m of members) {
        const at = m.frames.findIndex((f) => f.op === 'msg' && f.data === ref);
        if (at >= 0) return [m.user, m.frames.splice(at, 1)[0]!] as [string, Frame];
      }
      return undefined;
    }, `the member that got ${ref}`);
  };

  test('round_robin: each member in turn, once a round, in the index\'s order (user, node, connection)', async () => {
    const crew = await join(['rr-c', 'rr-a', 'rr-b'], 'rr');
    assert.deepEqual(await usersIn('pm:rr'), ['rr-a', 'rr-b', 'rr-c'], 'indexed by user');
    const got: string[] = [];
    for (let n = 0; n < 6; n++) {
      const [user, msg] = await anyTo(crew, 'rr');
      got.push(user);
      crew.find((m) => m.user === user)!.send({ op: 'ack', id: msg.id });
    }
    assert.deepEqual(got, ['rr-a', 'rr-b', 'rr-c', 'rr-a', 'rr-b', 'rr-c']);
    closeAll(crew);
  });

  test('weighted: a member of weight 3 gets three in a row, one of weight 1 one, and round again', async () => {
    const crew = await join(['w-light', 'w-heavy'], 'w');
    const got: string[] = [];
    for (let n = 0; n < 8; n++) {
      const [user, msg] = await anyTo(crew, 'w', 'weighted');
      got.push(user);
      crew.find((m) => m.user === user)!.send({ op: 'ack', id: msg.id });
    }
    assert.deepEqual(got, ['w-heavy', 'w-heavy', 'w-heavy', 'w-light', 'w-heavy', 'w-heavy', 'w-heavy', 'w-light']);
    closeAll(crew);
  });

  test('least_connections: the member holding the fewest unacknowledged `any` gets the next; a tie goes round', async () => {
    const crew = await join(['lc-x', 'lc-y'], 'lc');
    const got: Array<[string, Frame]> = [];
    for (let n = 0; n < 3; n++) got.push(await anyTo(crew, 'lc', 'least_connections'));
    assert.deepEqual(got.map(([user]) => user), ['lc-x', 'lc-y', 'lc-x'], 'holding 0 and 0, then 1 and 0, then 1 and 1');
    crew[1]!.send({ op: 'ack', id: got[1]![1].id });
    await until(async () => ((await t.reader.hget('aidx:load', 'lc-y')) === null ? true : undefined), "lc-y's ack recorded");
    assert.equal((await anyTo(crew, 'lc', 'least_connections'))[0], 'lc-y', 'holding 2 and 0');
    closeAll(crew);
  });

  test('an `any` to a group of 300 members reads a few of them, by each strategy (counted by Redis, not timed)', async () => {
    const crew: Named[] = [];
    for (let i = 0; i < 300; i += 50) crew.push(...(await join(Array.from({ length: 50 }, (_, k) => `many-${String(i + k).padStart(3, '0')}`), 'many')));
    // Hash reads: the message, the rotation, and a window per member visited. Reading the
    // group (as before the index) costs one per member: 300.
    for (const strategy of ['round_robin', 'weighted', 'least_connections']) {
      const before = await hashReads();
      const got = new Set<string>();
      for (let n = 0; n < 10; n++) got.add((await anyTo(crew, 'many', strategy))[0]);
      const perAny = ((await hashReads()) - before) / 10;
      assert.ok(perAny < 60, `${strategy}: ${perAny} hash reads per \`any\``);
      assert.ok(got.size >= (strategy === 'weighted' ? 1 : 10), `${strategy}: ${got.size} members got the 10`);
    }
    closeAll(crew);
  });
});

describe('members without room leave the index until their window frees (delivery.max_inflight_per_user 1)', { skip, timeout: 60_000 }, () => {
  const { t, usersIn, hashReads } = rig('afull:', { max_inflight_per_user: 1 });
  const PREFIX = 'afull:';
  const send = async (group: string, data: string): Promise<void> => {
    t.boss.send({ op: 'any', group, data, ref: data });
    assert.equal((await t.boss.next((f) => f.ref === data)).op, 'ack');
  };
  const msgOf = (client: TestClient, data: string): Promise<Frame> => client.next((f) => f.op === 'msg' && f.data === data);

  test('both windows full: the next `any` waits, both members are out of the index and marked; an ack puts its member back and it gets the message', async () => {
    const [p, q] = [await member(t.node.port, 'p', ['pool']), await member(t.node.port, 'q', ['pool'])];
    await send('pool', 'one');
    const one = await msgOf(p, 'one');
    await send('pool', 'two');
    await msgOf(q, 'two');
    await send('pool', 'three');
    await pause(200);
    assert.equal(await t.reader.zcard(`${PREFIX}qw:pool`), 1, 'it waits');
    assert.deepEqual(await usersIn('pa:pool'), [], 'nobody with room is left in the index');
    assert.deepEqual(await usersIn('pm:pool'), ['p', 'q'], 'both still members');
    assert.deepEqual([await t.reader.smembers(`${PREFIX}wg:p`), await t.reader.smembers(`${PREFIX}wg:q`)], [['pool'], ['pool']], 'both marked');
    p.send({ op: 'ack', id: one.id });
    await msgOf(p, 'three');
    assert.deepEqual(await t.reader.smembers(`${PREFIX}wg:p`), [], "p's mark taken");
    assert.deepEqual(await usersIn('pa:pool'), ['p'], 'p back in the index (q is still out)');
    assert.equal(await t.reader.zcard(`${PREFIX}qw:pool`), 0);
    // q leaves: out of the index, and its mark for the group goes with its last connection in it.
    q.send({ op: 'leave', group: 'pool', ref: 'bye' });
    await q.next((f) => f.op === 'left');
    await until(async () => ((await usersIn('pm:pool')).includes('q') ? undefined : true), 'q out of the members');
    assert.deepEqual(await t.reader.smembers(`${PREFIX}wg:q`), []);
    for (const c of [p, q]) c.close();
  });

  test('a group of 300 members whose windows are all full: an `any` that waits reads almost none of them (a full scan at most every 2 s)', async () => {
    const crew: TestClient[] = [];
    for (let i = 0; i < 300; i += 50) crew.push(...(await Promise.all(Array.from({ length: 50 }, (_, k) => member(t.node.port, `sat-${i + k}`, ['sat'])))));
    for (let n = 0; n < 300; n++) t.boss.send({ op: 'any', group: 'sat', data: n, ref: `fill-${n}` });
    await t.boss.next((f) => f.ref === 'fill-299');
    await until(() => (crew.every((c) => c.frames.some((f) => f.op === 'msg')) ? true : undefined), 'one for each member: every window full');
    const before = await hashReads();
    const started = Date.now();
    for (let n = 0; n < 20; n++) await send('sat', `wait-${n}`);
    await until(async () => ((await t.reader.zcard(`${PREFIX}qw:sat`)) === 20 ? true : undefined), 'all 20 wait');
    const reads = (await hashReads()) - before;
    // Reading the group for each (as before the index) costs reads per member per message: over
    // 12,000 here. Allowed: a few per message, and a full scan (two per member) at first and per 2 s.
    const scans = 1 + Math.ceil((Date.now() - started) / 2000);
    assert.ok(reads < 20 * 10 + scans * 620, `${reads} hash reads for 20 \`any\` that wait, in ${Date.now() - started} ms`);
    closeAll(crew);
  });

  test('an index an older version left behind (members, no index) is built again when an `any` comes', async () => {
    const r = await member(t.node.port, 'r', ['old']);
    await t.reader.del(`${PREFIX}pm:old`, `${PREFIX}pa:old`);
    await send('old', 'again');
    await msgOf(r, 'again');
    assert.deepEqual(await usersIn('pm:old'), ['r']);
    r.close();
  });

  test('a mark an older version left without its turn (P wg: alone) is offered the freed window all the same', async () => {
    const u = await member(t.node.port, 'u', ['fill', 'older']);
    await send('fill', 'held');
    const held = await msgOf(u, 'held');
    await send('older', 'behind');
    await until(async () => ((await t.reader.sismember(`${PREFIX}wg:u`, 'older')) === 1 ? true : undefined), 'u marked');
    await t.reader.del(`${PREFIX}wt:u`);
    u.send({ op: 'ack', id: held.id });
    await msgOf(u, 'behind');
    assert.deepEqual([await t.reader.smembers(`${PREFIX}wg:u`), await t.reader.zrange(`${PREFIX}wt:u`, '0', '-1')], [[], []]);
    u.close();
  });

  test('a member left out of the index with no mark (a missed event) gets what waits at the next full scan', async () => {
    const s = await member(t.node.port, 's', ['lost']);
    await t.reader.del(`${PREFIX}pa:lost`);
    await send('lost', 'found');
    await msgOf(s, 'found');
    assert.deepEqual(await usersIn('pa:lost'), ['s'], 'back in the index');
    s.close();
  });
});

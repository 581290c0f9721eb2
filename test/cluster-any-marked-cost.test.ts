/**
 * A user marked in many groups (P wg:USER: each holds an `any` that waited for room in its
 * window) in cluster mode: the ack that frees its window offers the freed room to those groups
 * in turn, only until the window is full again (src/cluster/route-any-script.ts
 * PUMP_MARKED). Before, each ack ran one PUMP_GROUP per marked group, each putting the user
 * back in the group's index only to find it full and mark it again: each ack of a user in 300 such groups
 * cost Redis 300 scripts and more. Counted by Redis (MONITOR), not timed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { member, type Frame, type TestClient } from './helpers/client.js';
import { settle, until } from './helpers/messaging.js';
import { announceSkip, nodeConfig, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { watchCommands } from './helpers/script-work.js';
import { startInProcess } from './helpers/server.js';
import type { RunningServer } from '../src/index.js';

const skip = announceSkip('cluster-any-marked-cost.test');
const PREFIX = 'amark:';

/** Counts the scripts Redis runs (MONITOR), until stopped. */
async function scriptCounter(url: string): Promise<{ count: () => number; stop: () => void }> {
  let scripts = 0;
  const stop = await watchCommands(url, (args) => {
    if (['evalsha', 'eval'].includes(args[0]?.toLowerCase() ?? '')) scripts++;
  });
  return { count: () => scripts, stop };
}

/**
 * A private Redis and a node on it (keys under PREFIX, `delivery` settings), a sender (boss) and
 * a member (hog) of `groups`, and `first`: a group in which to fill the hog's window.
 */
function rig(delivery: Record<string, unknown>, groups: string[]) {
  const t = {} as { redis: PrivateRedis; reader: Redis; node: RunningServer; boss: TestClient; hog: TestClient };
  before(async () => {
    t.redis = await startPrivateRedis();
    t.reader = new Redis(t.redis.url);
    t.node = await startInProcess(nodeConfig(t.redis.url, PREFIX, 1, { websocket: { delivery: { ack_timeout: 3600, max_backoff: 3600, ...delivery } } }));
    t.boss = await member(t.node.port, 'boss');
    t.hog = await member(t.node.port, 'hog', ['first', ...groups]);
  });
  after(async () => {
    t.boss?.close();
    t.hog?.close();
    t.reader?.disconnect();
    await t.node?.close();
    await t.redis?.stop();
  });
  /** The groups the hog is marked in. */
  const marks = (): Promise<number> => t.reader.scard(`${PREFIX}wg:hog`);
  const nextMsg = (): Promise<Frame> => t.hog.next((f) => f.op === 'msg');
  return {
    t,
    marks,
    nextMsg,
    any: async (group: string, data: string): Promise<void> => {
      const ref = `${group}:${data.slice(0, 20)}`;
      t.boss.send({ op: 'any', group, data, ref });
      assert.equal((await t.boss.next((f) => f.ref === ref)).op, 'ack');
    },
    /**
     * Acks `held`, then each message that came for it, `acks` times, each once `settled` (given
     * the data got so far) answers the marks it leaves: the data got, and the scripts each ack ran.
     */
    ackInTurn: async (held: Frame, acks: number, settled: (got: unknown[]) => number): Promise<{ got: unknown[]; perAck: number[] }> => {
      const scripts = await scriptCounter(t.redis.url);
      const got: unknown[] = [];
      const perAck: number[] = [];
      try {
        for (let n = 0; n < acks; n++) {
          const from = scripts.count();
          t.hog.send({ op: 'ack', id: held.id });
          held = await nextMsg();
          got.push(held.data);
          // What the ack set going has run once the window is full and the marks are back.
          const left = settled(got);
          await until(async () => ((await marks()) === left ? true : undefined), 'the marks settled');
          perAck.push(scripts.count() - from);
        }
      } finally {
        scripts.stop();
      }
      return { got, perAck };
    },
    /** The group whose turn comes last. */
    last: async (): Promise<string | undefined> => (await t.reader.zrange(`${PREFIX}wt:hog`, '-1', '-1'))[0],
  };
}

describe('an ack of a user marked in 300 groups whose `any` wait for its window (delivery.max_inflight_per_user 1)', { skip, timeout: 120_000 }, () => {
  const GROUPS = 300;
  const ACKS = 10;
  const groups = Array.from({ length: GROUPS }, (_, i) => `g${String(i).padStart(3, '0')}`);
  const { any, nextMsg, marks, last, ackInTurn } = rig({ max_inflight_per_user: 1 }, groups);

  test(`each of ${ACKS} acks runs a few scripts, not one per marked group; the groups get the freed window in the order they waited`, async (c) => {
    await any('first', 'first');
    // Marked in the order they wait: each `any` finds the hog's window full. The first group has
    // a second one: served, it is marked again, behind the others.
    for (const group of groups) await any(group, `to-${group}`);
    await any(groups[0]!, 'again');
    await until(async () => ((await marks()) === GROUPS ? true : undefined), `hog marked in all ${GROUPS} groups`);
    // The first group's two messages both delivered empty it; the others' one.
    const emptied = (got: unknown[]): number => got.filter((data) => data !== `to-${groups[0]}` && data !== 'again').length + (got.includes(`to-${groups[0]}`) && got.includes('again') ? 1 : 0);
    const { got, perAck } = await ackInTurn(await nextMsg(), ACKS, (sofar) => GROUPS - emptied(sofar));
    c.diagnostic(`scripts per ack: ${perAck.join(', ')}`);
    // ACKS, PUMP, and what the freed window is offered in: one script, a few if Redis is slow to answer.
    assert.ok(perAck.every((p) => p <= 6), `scripts per ack: ${perAck.join(', ')}`);
    assert.deepEqual(got, groups.slice(0, ACKS).map((g) => `to-${g}`), 'one message per ack, from the groups in the order they waited, the first not again');
    assert.equal(await marks(), GROUPS - ACKS + 1, 'the groups not served still marked, and the first again');
    assert.equal(await last(), groups[0], 'the first at the back');
  });
});

/**
 * A window with room left by count but not by bytes may fit none of the marked groups' messages:
 * each ack's pass then offers every group, once (those marked again are past the pass's end), in
 * scripts of 64 groups.
 */
describe('an ack of a user marked in 100 groups whose `any` wait for room in its window by bytes (max_inflight_bytes_per_user 1000)', { skip, timeout: 120_000 }, () => {
  const GROUPS = 100;
  const ACKS = 5;
  const groups = Array.from({ length: GROUPS }, (_, i) => `b${String(i).padStart(3, '0')}`);
  const { any, nextMsg, marks, ackInTurn } = rig({ max_inflight_per_user: 100, max_inflight_bytes_per_user: 1000 }, groups);
  const big = (name: string): string => name.padEnd(600, '.');

  test(`each of ${ACKS} acks offers each group once, in a few scripts; the groups get the freed window in the order they waited`, async (c) => {
    await any('first', big('first'));
    for (const group of groups) await any(group, big(group));
    await until(async () => ((await marks()) === GROUPS ? true : undefined), `hog marked in all ${GROUPS} groups`);
    const { got, perAck } = await ackInTurn(await nextMsg(), ACKS, (sofar) => GROUPS - sofar.length);
    c.diagnostic(`scripts per ack: ${perAck.join(', ')}`);
    // ACKS, PUMP, and two scripts of the pass (64 groups and 36), a few more if Redis is slow to answer.
    assert.ok(perAck.every((p) => p <= 8), `scripts per ack: ${perAck.join(', ')}`);
    assert.deepEqual(got.map((data) => (data as string).replace(/\.+$/, '')), groups.slice(0, ACKS));
  });
});

/**
 * Two nodes, a user with a connection on each and another member: acks on both nodes offer the
 * windows they free to the same marked groups at once, each pass until its window is full.
 */
describe('two nodes: members marked in 100 groups that ack on both, each `any` delivered once (delivery.max_inflight_per_user 2)', { skip, timeout: 120_000 }, () => {
  const GROUPS2 = 100;
  const PER_GROUP = 2;
  let redis: PrivateRedis;
  const nodes: RunningServer[] = [];
  const clients: TestClient[] = [];

  before(async () => {
    redis = await startPrivateRedis();
    for (let i = 0; i < 2; i++) nodes.push(await startInProcess(nodeConfig(redis.url, PREFIX, 1, { websocket: { delivery: { max_inflight_per_user: 2, ack_timeout: 3600, max_backoff: 3600 } } })));
  });
  after(async () => {
    for (const c of clients) c.close();
    for (const n of nodes) await n.close();
    await redis?.stop();
  });

  test(`${GROUPS2 * PER_GROUP} \`any\` behind full windows reach the members once each, as they ack, in a few scripts per ack`, async (t) => {
    const groups = Array.from({ length: GROUPS2 }, (_, i) => `h${i}`);
    const boss = await member(nodes[0]!.port, 'boss');
    const members = [await member(nodes[0]!.port, 'hog', groups), await member(nodes[1]!.port, 'hog', groups), await member(nodes[1]!.port, 'peer', groups)];
    clients.push(boss, ...members);
    const scripts = await scriptCounter(redis.url);
    const got: unknown[] = [];
    // Each member acks what it got, on the node it came through.
    const ackWhatCame = (client: TestClient): void => {
      for (const f of client.frames.splice(0)) {
        for (const m of f.op === 'batch' ? (f.msgs as Frame[]) : f.op === 'msg' ? [f] : []) {
          got.push(m.data);
          client.send({ op: 'ack', id: m.id });
        }
      }
    };
    for (let k = 0; k < PER_GROUP; k++) for (const group of groups) boss.send({ op: 'any', group, data: `${group}.${k}`, ref: `${group}.${k}` });
    for (let k = 0; k < PER_GROUP; k++) for (const group of groups) assert.equal((await boss.next((f) => f.ref === `${group}.${k}`, 30_000)).op, 'ack');
    await until(() => {
      members.forEach(ackWhatCame);
      return got.length >= GROUPS2 * PER_GROUP ? true : undefined;
    }, 'every `any` delivered', 90_000);
    await settle(members[0]!);
    scripts.stop();
    assert.equal(got.length, GROUPS2 * PER_GROUP);
    assert.equal(new Set(got).size, GROUPS2 * PER_GROUP, 'each once');
    // Sends (STORE, ROUTE_ANY, PUMP_GROUP behind what waits) and, per ack, ACKS, PUMP and a pass or two.
    t.diagnostic(`${scripts.count()} scripts for ${got.length} messages sent and acknowledged`);
    assert.ok(scripts.count() / got.length < 12, `${scripts.count()} scripts for ${got.length} messages sent and acknowledged`);
  });
});

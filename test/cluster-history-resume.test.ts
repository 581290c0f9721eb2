/**
 * A node cut off from Redis hears nothing the other nodes publish meanwhile; when Redis is back
 * its members of history groups get what they missed, in order, once, before what comes next
 * (src/cluster/history.ts, resume). Two real nodes on a private Redis, one of them through a
 * proxy the test cuts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sleep } from './helpers/broker.js';
import { getJson, member, type Frame, type TestClient } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { joinGroup as join, nextMsgs } from './helpers/history.js';
import { untilTrue } from './helpers/messaging.js';
import { announceSkip, nodeConfig } from './helpers/redis.js';

const skip = announceSkip('cluster-history-resume.test');
const RESUMED = 'cluster: history groups resumed after the outage';

function config(redisUrl: string): Record<string, unknown> {
  const node = nodeConfig(redisUrl, 'resume:', 1, {
    websocket: {
      history: [
        { pattern: 'small.*', size: 2 },
        { pattern: 'room.*', size: 1000 },
      ],
    },
  });
  Object.assign(node.cluster as object, { reconnect_max_delay: 0.2, command_timeout: 1, presence_ttl: 30 });
  return node;
}

describe('a node cut off from Redis, and back', { skip }, () => {
  /** 0 reaches Redis through the proxy, 1 directly. */
  const cluster = clusterFixture({ nodes: [{ config, throughProxy: true }, { config }], stop: 'graceful' });
  const { nodes, open } = cluster;

  async function on(node: number, user: string): Promise<TestClient> {
    const client = await member(nodes[node]!.port, user);
    open.push(client);
    return client;
  }

  const redisOf = async (node: number): Promise<string> => ((await getJson(nodes[node]!.port, '/health')).body.cluster as { redis: string }).redis;

  /** Cuts node 0 off from Redis while `meanwhile` runs, then lets it back and waits until it is up. */
  async function cutOff(meanwhile: () => Promise<void>): Promise<void> {
    cluster.proxy.refuse = true;
    await untilTrue('node 0 to see Redis go', async () => (await redisOf(0)) !== 'up');
    await meanwhile();
    cluster.proxy.refuse = false;
    await untilTrue('node 0 to be back', async () => (await getJson(nodes[0]!.port, '/health')).body.status === 'ok');
  }

  async function counter(node: number, name: string): Promise<number> {
    return ((await getJson(nodes[node]!.port, '/stats')).body.messaging as Record<string, number>)[name] ?? NaN;
  }

  /** The broker's counters reach /stats once per metrics interval. */
  async function counted(node: number, name: string, value: number): Promise<void> {
    await untilTrue(`${name} to be ${value}`, async () => (await counter(node, name)) === value);
  }

  /** `user` on node 0 and a publisher on node 1 in `group`, which `user` got one message of; node 0's gaps so far. */
  async function oneSeen(user: string, group: string): Promise<{ member: TestClient; publisher: TestClient; gapsBefore: number }> {
    const member = await on(0, user);
    const publisher = await on(1, `${user}-publisher`);
    await join(member, group);
    await join(publisher, group);
    publisher.send({ op: 'pub', group, data: 'seen' });
    await nextMsgs(member, 1);
    return { member, publisher, gapsBefore: await counter(0, 'cluster_history_gaps') };
  }

  test('its members get what other nodes published meanwhile, in order and once, then the live messages', async () => {
    const alice = await on(0, 'alice');
    const publisher = await on(1, 'publisher');
    const { joined } = await join(alice, 'room.cut');
    await join(publisher, 'room.cut');
    for (let i = 1; i <= 3; i++) publisher.send({ op: 'pub', group: 'room.cut', data: `before ${i}` });
    assert.deepEqual((await nextMsgs(alice, 3)).map((m) => m.data), ['before 1', 'before 2', 'before 3']);

    await cutOff(async () => {
      for (let i = 1; i <= 5; i++) {
        publisher.send({ op: 'pub', group: 'room.cut', data: `meanwhile ${i}`, ref: `m${i}` });
        await publisher.next((f) => f.op === 'ack' && f.ref === `m${i}`);
      }
    });
    publisher.send({ op: 'pub', group: 'room.cut', data: 'after' });
    const got = await nextMsgs(alice, 6);
    assert.deepEqual(got.map((m) => m.data), ['meanwhile 1', 'meanwhile 2', 'meanwhile 3', 'meanwhile 4', 'meanwhile 5', 'after']);
    assert.deepEqual(got.map((m) => m.offset), [4, 5, 6, 7, 8, 9]);
    assert.ok(got.every((m) => m.epoch === joined.epoch));
    await counted(0, 'cluster_history_resumed', 5);
  });

  test('while publishers race the reconnection, every message reaches the member once and in order', async () => {
    const bob = await on(0, 'bob');
    const publisher = await on(1, 'racer');
    const { joined } = await join(bob, 'room.race');
    await join(publisher, 'room.race');
    let stop = false;
    let sent = 0;
    const traffic = (async () => {
      while (!stop) {
        publisher.send({ op: 'pub', group: 'room.race', data: sent++ });
        await sleep(3);
      }
    })();
    await sleep(100);
    await cutOff(() => sleep(300));
    await sleep(200);
    stop = true;
    await traffic;
    publisher.send({ op: 'pub', group: 'room.race', data: 'last', ref: 'last' });
    const top = (await publisher.next((f) => f.op === 'ack' && f.ref === 'last')).offset as number;
    const got: Frame[] = [];
    while (got.at(-1)?.data !== 'last') got.push(...(await nextMsgs(bob, 1)));
    assert.deepEqual(got.map((m) => m.offset), Array.from({ length: top }, (_, i) => (joined.offset as number) + 1 + i), 'every offset once, in order');
  });

  test('a group whose member left while its join was being answered is not resumed after an outage (nor kept by the node)', async () => {
    const churner = await on(0, 'churner');
    // Join and leave back to back: the leave is handled at once, the join's answer comes from Redis after it.
    for (let i = 0; i < 20; i++) {
      churner.send({ op: 'join', group: `room.gone.${i}`, ref: `j${i}` });
      churner.send({ op: 'leave', group: `room.gone.${i}`, ref: `l${i}` });
    }
    for (let i = 0; i < 20; i++) await churner.next((f) => f.op === 'left' && f.ref === `l${i}`);
    const kept = await on(0, 'keeper');
    await join(kept, 'room.kept');
    const resumedBefore = nodes[0]!.logs.filter((line) => line.msg === RESUMED).length;
    await cutOff(() => sleep(200));
    const resumed = await untilTrue('the resume', async () => nodes[0]!.logs.filter((line) => line.msg === RESUMED).length > resumedBefore).then(
      () => nodes[0]!.logs.filter((line) => line.msg === RESUMED).at(-1)!,
    );
    assert.ok((resumed.groups as number) < 20, `only groups with members here: ${JSON.stringify(resumed)}`);
    assert.equal(resumed.gaps, 0);
  });

  test('what is no longer kept is not made up: the members see the gap, counted', async () => {
    const { member: carol, publisher, gapsBefore } = await oneSeen('carol', 'small.cut');

    await cutOff(async () => {
      for (let i = 1; i <= 4; i++) {
        publisher.send({ op: 'pub', group: 'small.cut', data: `lost ${i}`, ref: `l${i}` });
        await publisher.next((f) => f.op === 'ack' && f.ref === `l${i}`);
      }
    });
    publisher.send({ op: 'pub', group: 'small.cut', data: 'next' });
    const [next] = await nextMsgs(carol, 1);
    assert.deepEqual([next!.data, next!.offset], ['next', 6], 'the next message shows the gap (offsets 2-5 missed, 2-3 no longer kept)');
    await counted(0, 'cluster_history_gaps', gapsBefore + 1);
  });

  /**
   * Cuts node 0 off while `missed` messages are published to `group`, and breaks the group's
   * keys in Redis (its epoch and top made a string: every script of the group fails, WRONGTYPE,
   * while Redis stays up) as the node comes back; resolves with what puts them back, once the
   * node's first resume was refused.
   */
  async function refusedResume(publisher: TestClient, group: string, missed: number): Promise<() => Promise<void>> {
    const resumedBefore = nodes[0]!.logs.filter((line) => line.msg === RESUMED).length;
    const redis = cluster.redis.client();
    const key = `resume:h:${group}`;
    let kept: Record<string, string> = {};
    await cutOff(async () => {
      for (let i = 1; i <= missed; i++) {
        publisher.send({ op: 'pub', group, data: `missed ${i}`, ref: `r${i}` });
        await publisher.next((f) => f.op === 'ack' && f.ref === `r${i}`);
      }
      kept = await redis.hgetall(key);
      await redis.set(key, 'not a hash');
    });
    await untilTrue('the resume', async () => nodes[0]!.logs.filter((line) => line.msg === RESUMED).length > resumedBefore);
    return async () => {
      await redis.del(key);
      await redis.hset(key, kept);
      redis.disconnect();
    };
  }

  /** `client`'s msgs up to the one with `data` (inclusive). */
  async function msgsUntil(client: TestClient, data: string): Promise<Frame[]> {
    const got: Frame[] = [];
    while (got.at(-1)?.data !== data) got.push(...(await nextMsgs(client, 1)));
    return got;
  }

  test('a resume Redis refuses while the node stays up is asked again: its members get what they missed, in order, once; a join meanwhile gets no message twice', async () => {
    const { member: dave, publisher, gapsBefore } = await oneSeen('dave', 'room.refused');
    const resumedBefore = await counter(0, 'cluster_history_resumed');
    const putBack = await refusedResume(publisher, 'room.refused', 3);
    await putBack();
    // Joins at once, while the resume may still wait for its next try: that try is asked first.
    const newcomer = await on(0, 'newcomer');
    const { joined } = await join(newcomer, 'room.refused');
    publisher.send({ op: 'pub', group: 'room.refused', data: 'next' });
    const got = await msgsUntil(dave, 'next');
    assert.deepEqual(got.map((m) => [m.data, m.offset]), [['missed 1', 2], ['missed 2', 3], ['missed 3', 4], ['next', 5]]);
    assert.deepEqual((await msgsUntil(newcomer, 'next')).map((m) => m.offset), [(joined.offset as number) + 1], 'the newcomer: only what came after its join');
    await counted(0, 'cluster_history_resumed', resumedBefore + 3);
    assert.equal(await counter(0, 'cluster_history_gaps'), gapsBefore, 'no gap');
  });

  test('a resume Redis keeps refusing is given up after its tries: a gap, counted and logged, and the next message shows it', async () => {
    const { member: erin, publisher, gapsBefore } = await oneSeen('erin', 'room.refusing');
    const putBack = await refusedResume(publisher, 'room.refusing', 3);
    try {
      await counted(0, 'cluster_history_gaps', gapsBefore + 1);
      assert.ok(nodes[0]!.logs.some((line) => line.group === 'room.refusing' && /could not be resumed/.test(String(line.msg))), 'logged');
    } finally {
      await putBack();
    }
    publisher.send({ op: 'pub', group: 'room.refusing', data: 'next' });
    const [next] = await nextMsgs(erin, 1);
    assert.deepEqual([next!.data, next!.offset], ['next', 5], 'the next message shows the gap (offsets 2-4 missed)');
  });
});

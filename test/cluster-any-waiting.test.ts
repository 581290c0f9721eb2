/**
 * The `any` messages that wait for a member of their group, in cluster mode: they are indexed in
 * Redis (P qw:GROUP, src/cluster/scripts.ts) from the moment they wait until a member takes
 * them, so a join reads the index instead of scanning the group's whole queue; what a version
 * without the index left waiting is indexed when a node starts (src/cluster/waiting-index.ts).
 * Real nodes on a private Redis, which the tests read to see the index.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { member, type TestClient } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { until } from './helpers/messaging.js';
import { announceSkip, nodeConfig } from './helpers/redis.js';
import { startInProcess } from './helpers/server.js';

const skip = announceSkip('cluster-any-waiting.test');

describe('waiting `any` messages in cluster mode', { skip, timeout: 60_000 }, () => {
  const cluster = clusterFixture({ store: true });

  const waiting = (prefix: string, group: string): Promise<string[]> => cluster.store.zrange(`${prefix}qw:${group}`, '0', '-1');
  const anyTo = async (sender: TestClient, group: string, job: number): Promise<string> => {
    sender.send({ op: 'any', group, data: { job }, ref: `any-${job}` });
    return (await sender.next((f) => f.ref === `any-${job}`)).id as string;
  };

  test('an `any` is in the index while no member can take it, out of it once one has it, and back in it when its holder left before its ack deadline', async () => {
    const node = await startInProcess(nodeConfig(cluster.redis.url, 'idx:', 1, { websocket: { delivery: { ack_timeout: 1, max_backoff: 1 } } }));
    try {
      const sender = await member(node.port, 'asker');
      const id = await anyTo(sender, 'desk', 0);
      assert.deepEqual(await waiting('idx:', 'desk'), [id], 'no member yet: it waits, indexed');
      const first = await member(node.port, 'first', ['desk']);
      assert.equal((await first.next((f) => f.op === 'msg')).id, id);
      assert.deepEqual(await waiting('idx:', 'desk'), [], 'in flight: out of the index');
      // Its holder leaves without an ack: at the deadline it waits again, indexed again.
      first.close();
      await until(async () => ((await waiting('idx:', 'desk')).includes(id) ? true : undefined), 'back in the index after its ack deadline', 10_000);
      const second = await member(node.port, 'second', ['desk']);
      const again = await second.next((f) => f.op === 'msg');
      assert.deepEqual([again.id, await waiting('idx:', 'desk')], [id, []]);
      second.send({ op: 'ack', id });
      for (const client of [sender, second]) client.close();
    } finally {
      await node.close();
    }
  });

  test('with 50 `any` messages in flight none waits: a join finds nothing to route', async () => {
    // Deadlines far off: none of the 50 comes back to wait while the test runs, however slow the machine.
    const node = await startInProcess(nodeConfig(cluster.redis.url, 'busy:', 1, { websocket: { delivery: { ack_timeout: 60, max_backoff: 60 } } }));
    try {
      const sender = await member(node.port, 'asker');
      const holder = await member(node.port, 'holder', ['desk']);
      for (let job = 1; job <= 50; job++) await anyTo(sender, 'desk', job);
      assert.equal(await cluster.store.zcard('busy:q:g:desk'), 50, 'all 50 in the queue, in flight to `holder`');
      assert.deepEqual(await waiting('busy:', 'desk'), [], 'none waits');
      const late = await member(node.port, 'late', ['desk']);
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(late.frames.filter((f) => f.op === 'msg').length, 0, 'the join routed nothing: nothing waited');
      for (const client of [sender, holder, late]) client.close();
    } finally {
      await node.close();
    }
  });

  test('what an older version left waiting (not in the index) is indexed when a node starts, and goes to the first member who joins', async () => {
    const older = await startInProcess(nodeConfig(cluster.redis.url, 'old:', 1));
    const sender = await member(older.port, 'asker');
    const ids = [await anyTo(sender, 'legacy', 1), await anyTo(sender, 'legacy', 2)];
    sender.close();
    await older.close();
    // As a node without the index would have stored them.
    await cluster.store.del('old:qw:legacy');
    const node = await startInProcess(nodeConfig(cluster.redis.url, 'old:', 1));
    try {
      await until(async () => ((await waiting('old:', 'legacy')).length === 2 ? true : undefined), 'indexed once the node is up');
      assert.deepEqual((await waiting('old:', 'legacy')).sort(), [...ids].sort());
      const helper = await member(node.port, 'helper', ['legacy']);
      const got = [(await helper.next((f) => f.op === 'msg')).id, (await helper.next((f) => f.op === 'msg')).id];
      assert.deepEqual(got.sort(), [...ids].sort());
      helper.close();
    } finally {
      await node.close();
    }
  });

  test('an id an older version took out of the queue but not out of the index is dropped from it by the next join, and never delivered', async () => {
    const node = await startInProcess(nodeConfig(cluster.redis.url, 'stale:', 1));
    try {
      const sender = await member(node.port, 'asker');
      const id = await anyTo(sender, 'desk', 1);
      // As a node without the index would have acknowledged it: the message gone, its index entry left.
      await cluster.store.multi().del(`stale:m:${id}`).zrem('stale:q:g:desk', id).exec();
      assert.deepEqual(await waiting('stale:', 'desk'), [id]);
      const helper = await member(node.port, 'helper', ['desk']);
      await until(async () => ((await waiting('stale:', 'desk')).length === 0 ? true : undefined), 'the stale entry dropped');
      assert.equal(helper.frames.filter((f) => f.op === 'msg').length, 0);
      for (const client of [sender, helper]) client.close();
    } finally {
      await node.close();
    }
  });
});

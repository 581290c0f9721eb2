/**
 * The dead letters in Redis are bounded as on one process (store.max_dead_letters,
 * store.max_dead_letter_bytes; src/cluster/dead-letter-scripts.ts): the scripts that add a
 * letter drop the oldest past the bound in the same step, keep P dla (age) and P dlb (bytes)
 * in step with every removal, and the node counts the drops. Real nodes on a private Redis.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { member, type TestClient } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { adminJson, nextMsgs, untilTrue } from './helpers/messaging.js';
import { untilMetricIs } from './helpers/prometheus.js';
import { announceSkip, nodeConfig } from './helpers/redis.js';
import { startInProcess } from './helpers/server.js';
import type { RunningServer } from '../src/index.js';

const skip = announceSkip('cluster-dead-bound.test');

/** Stored, then acknowledged to its sender: the `ack` of a `send` with this ref. */
async function sent(client: TestClient, to: string, data: unknown, ref: string): Promise<void> {
  client.send({ op: 'send', to, data, pri: 0, ref });
  assert.equal((await client.next((f) => f.ref === ref)).op, 'ack');
}

describe('the dead letters in Redis are bounded', { skip, timeout: 60_000 }, () => {
  const cluster = clusterFixture({ store: true });

  /** The kept letters' data, P dla's size and P dlb, for prefix P. */
  const letters = async (prefix: string): Promise<{ data: string[]; aged: number; bytes: number }> => {
    const ids = await cluster.store.zrange(`${prefix}dlq`, '0', '-1');
    const data = await Promise.all(ids.map(async (id) => (await cluster.store.hget(`${prefix}d:${id}`, 'data')) ?? '?'));
    return { data: data.sort(), aged: await cluster.store.zcard(`${prefix}dla`), bytes: Number((await cluster.store.get(`${prefix}dlb`)) ?? 0) };
  };

  test('a flood of LOW sends to a full queue keeps max_dead_letters, the latest; the drops are counted; remove, requeue and purge keep the age and bytes', async () => {
    const node = await startInProcess(
      nodeConfig(cluster.redis.url, 'cnt:', 1, { websocket: { admin: { token: 't' }, delivery: { max_pending_per_user: 1 } }, store: { max_dead_letters: 3 } }),
    );
    try {
      const flooder = await member(node.port, 'flooder');
      for (let n = 0; n < 20; n++) await sent(flooder, 'offline-bob', n, `r${n}`);
      // 19 pushed out of bob's queue of 1; 3 of them kept.
      assert.deepEqual(await letters('cnt:'), { data: ['16', '17', '18'], aged: 3, bytes: 6 });
      await untilMetricIs(node.port, 'ocs_messages_dead_dropped_total', 16);
      const [oldest] = await cluster.store.zrange('cnt:dla', '0', '0');
      assert.equal((await adminJson(node.port, 'DELETE', `/admin/dlq/${encodeURIComponent(oldest!)}`, 't')).status, 200);
      assert.deepEqual(await letters('cnt:'), { data: ['17', '18'], aged: 2, bytes: 4 });
      const [next] = await cluster.store.zrange('cnt:dla', '0', '0');
      // Back in bob's full queue, where it takes the place of the LOW message waiting there (19), now a letter.
      assert.equal((await adminJson(node.port, 'POST', `/admin/dlq/${encodeURIComponent(next!)}/requeue`, 't')).status, 200);
      assert.deepEqual(await letters('cnt:'), { data: ['18', '19'], aged: 2, bytes: 4 });
      assert.equal((await adminJson(node.port, 'DELETE', '/admin/dlq', 't')).status, 200);
      assert.deepEqual(await letters('cnt:'), { data: [], aged: 0, bytes: 0 });
      flooder.close();
    } finally {
      await node.close();
    }
  });

  test('max_dead_letter_bytes: the oldest go until the data fits; unacknowledged deliveries swept dead are held to it too', async () => {
    const node = await startInProcess(
      nodeConfig(cluster.redis.url, 'byt:', 1, {
        websocket: { delivery: { max_pending_per_user: 1, ack_timeout: 0.2, max_attempts: 1, max_backoff: 1 } },
        store: { max_dead_letters: 1000, max_dead_letter_bytes: 100 },
      }),
    );
    try {
      const flooder = await member(node.port, 'flooder');
      const payload = (n: number): string => `${n}`.padEnd(28, '.'); // 30 bytes as JSON
      for (let n = 0; n < 6; n++) await sent(flooder, 'away', payload(n), `b${n}`);
      assert.deepEqual(await letters('byt:'), { data: [2, 3, 4].map((n) => JSON.stringify(payload(n))), aged: 3, bytes: 90 });
      // A delivery never acknowledged: dead after its one attempt, by the sweep, which trims too.
      const silent = await member(node.port, 'silent');
      await sent(flooder, 'silent', payload(9), 'late');
      await nextMsgs(silent, 1);
      await untilTrue('swept dead, the oldest dropped', async () => (await letters('byt:')).data.includes(JSON.stringify(payload(9))));
      assert.deepEqual(await letters('byt:'), { data: [3, 4, 9].map((n) => JSON.stringify(payload(n))), aged: 3, bytes: 90 });
      await untilMetricIs(node.port, 'ocs_messages_dead_dropped_total', 3);
      for (const c of [flooder, silent]) c.close();
    } finally {
      await node.close();
    }
  });

  test('letters written before the bound (no age) are held to it from the start, and given their age (failedAt) by the node', async () => {
    for (const id of ['old-a', 'old-b', 'old-c']) {
      await cluster.store.hset(`old:d:${id}`, { target: 'u:x', from: 'y', group: '', data: '1', pri: 0, ts: 1, at: 0, attempts: 1, strategy: '', reason: 'old', failedAt: 1 });
      await cluster.store.zadd('old:dlq', 0, id);
    }
    const node = await startInProcess(nodeConfig(cluster.redis.url, 'old:', 1, { websocket: { delivery: { max_pending_per_user: 1 } }, store: { max_dead_letters: 2 } }));
    try {
      // Three for a bound of 2: the first sweep drops one (old-a: the first by age, or by id without one).
      await untilTrue('the old letters indexed', async () => (await cluster.store.zcard('old:dla')) === 2);
      assert.deepEqual(await cluster.store.zrange('old:dlq', '0', '-1'), ['old-b', 'old-c']);
      assert.equal(await cluster.store.get('old:dlb'), '2');
      const flooder = await member(node.port, 'flooder');
      for (let n = 0; n < 2; n++) await sent(flooder, 'nobody', `new${n}`, `o${n}`);
      // One new letter (new0), three old: down to 2, the oldest first.
      const newest = (await cluster.store.zrange('old:dla', '-1', '-1'))[0]!;
      assert.equal(await cluster.store.hget(`old:d:${newest}`, 'data'), '"new0"');
      assert.deepEqual(await cluster.store.zrange('old:dlq', '0', '-1'), ['old-c', newest].sort());
      flooder.close();
    } finally {
      await node.close();
    }
  });
});

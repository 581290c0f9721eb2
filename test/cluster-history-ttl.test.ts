/**
 * A history rule's `ttl` in cluster mode is seconds, any non-negative number the schema takes
 * (config/value-types.ts): the scripts get it in milliseconds, and Redis's PEXPIRE takes whole
 * ones only, written as integers (Lua writes 2e+17 for a large one). Two real nodes on a private Redis.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { member, type TestClient } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { joinGroup, nextMsgs } from './helpers/history.js';
import { announceSkip } from './helpers/redis.js';

const skip = announceSkip('cluster-history-ttl.test');
// 1.001 s is 1000.9999999999999 ms in a double (so are many other ttls of two or three decimals: 2.01, 8.05); 0.0003 s is 0.3 ms.
const RULES = [
  { pattern: 'odd.*', size: 10, ttl: 1.001 },
  { pattern: 'tiny.*', size: 10, ttl: 0.0003 },
  // 10^14 s: twice it in ms is past what Lua hands Redis as an integer (1e+17).
  { pattern: 'far.*', size: 10, ttl: 1e14 },
];

describe('history rules with an odd ttl, in cluster mode', { skip }, () => {
  const cluster = clusterFixture({
    nodes: [0, 1].map(() => ({ prefix: 'ttl:', extra: { websocket: { history: RULES } } })),
  });

  async function pub(client: TestClient, group: string, data: unknown): Promise<Record<string, unknown>> {
    const ref = `${group}:${Math.random()}`;
    client.send({ op: 'pub', group, data, ref });
    return client.next((f) => (f.op === 'ack' || f.op === 'err') && f.ref === ref);
  }

  /** A publisher on one node and a member of `group` on the other, which gets what `data` publishes, numbered from 1. */
  async function published(group: string, data: string[]): Promise<TestClient[]> {
    const [a, b] = await Promise.all(cluster.nodes.map((node, i) => member(node.port, `${group}.${i}`)));
    cluster.open.push(a!, b!);
    await joinGroup(b!, group);
    const acks = [];
    for (const text of data) acks.push(await pub(a!, group, text));
    assert.deepEqual(acks.map((f) => [f.op, f.offset]), data.map((_, i) => ['ack', i + 1]), JSON.stringify(acks));
    assert.deepEqual((await nextMsgs(b!, data.length)).map((m) => m.data), data);
    return [a!, b!];
  }

  test('a ttl of 1.001 s: pubs are numbered, kept and delivered on both nodes; past the ttl they are gone', async () => {
    const [a, b] = await published('odd.room', ['one', 'two']);
    const { replayed, joined } = await joinGroup(a!, 'odd.room', { offset: 0, epoch: 'x' });
    assert.deepEqual([joined.recovered, replayed], [false, []]);
    assert.deepEqual((await history(a!, 'odd.room')).msgs.map((m) => m.data), ['one', 'two'], 'kept within the ttl');
    await new Promise((r) => setTimeout(r, 1300));
    assert.deepEqual((await history(b!, 'odd.room')).msgs, [], 'gone past the ttl');
  });

  test('a ttl under a millisecond: pubs are numbered and delivered, and expire', async () => {
    const [, b] = await published('tiny.room', ['one']);
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual((await history(b!, 'tiny.room')).msgs, [], 'gone past the ttl');
  });

  test('a ttl of 10^14 s: pubs are numbered, kept and delivered', async () => {
    const [, b] = await published('far.room', ['one']);
    assert.deepEqual((await history(b!, 'far.room')).msgs.map((m) => m.data), ['one']);
  });
});

async function history(client: TestClient, group: string): Promise<{ msgs: Array<Record<string, unknown>> }> {
  const ref = `h-${Math.random()}`;
  client.send({ op: 'history', group, since: 0, ref });
  const page = await client.next((f) => (f.op === 'history' || f.op === 'err') && f.ref === ref);
  assert.equal(page.op, 'history', JSON.stringify(page));
  return page as unknown as { msgs: Array<Record<string, unknown>> };
}

/**
 * history.max_groups and history.max_bytes in cluster mode: they bound what Redis keeps for
 * every node together, as they bound one process's memory (docs/messaging.md, "Presence and
 * history in cluster mode"). Two real nodes on a private Redis, each test on its own key prefix.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { member, type TestClient } from './helpers/client.js';
import { joinGroup as join, nextMsgs } from './helpers/history.js';
import { announceSkip, nodeConfig, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { startProcess, type ServerProcess } from './helpers/server.js';

const skip = announceSkip('cluster-history-limits.test');
const MAX_GROUPS = 3;
const MAX_BYTES = 3000;
const TEXT = 'x'.repeat(200);

describe('history limits bound Redis, over all nodes', { skip }, () => {
  let redis: PrivateRedis | undefined;
  const nodes: ServerProcess[] = [];
  const open: TestClient[] = [];
  after(async () => {
    open.forEach((client) => client.close());
    await Promise.all(nodes.map((node) => node.stop()));
    await redis?.stop();
  });

  /** Two nodes on a fresh key prefix, with one client on each. */
  async function cluster(prefix: string): Promise<TestClient[]> {
    redis ??= await startPrivateRedis();
    const config = nodeConfig(redis.url, prefix, 1, {
      websocket: { history: [{ pattern: 'room.*', size: 1000 }] },
    });
    (config as { history?: object }).history = { max_groups: MAX_GROUPS, max_bytes: MAX_BYTES };
    const pair = [await startProcess(config), await startProcess(config)];
    nodes.push(...pair);
    const clients = [await member(pair[0]!.port, `${prefix}0`), await member(pair[1]!.port, `${prefix}1`)];
    open.push(...clients);
    return clients;
  }

  /** Publishes and waits for the ack: the scripts ran in this order. */
  async function pub(client: TestClient, group: string, data: unknown): Promise<number> {
    const ref = `${group}:${Math.random()}`;
    client.send({ op: 'pub', group, data, ref });
    return (await client.next((f) => f.op === 'ack' && f.ref === ref)).offset as number;
  }

  /** What Redis holds under `prefix`: groups with an epoch, kept entries' bytes, and what the counters say. */
  async function held(prefix: string): Promise<{ groups: string[]; bytes: number; counted: number; used: number }> {
    const client = redis!.client();
    const metas = await client.keys(`${prefix}h:*`);
    let bytes = 0;
    for (const list of await client.keys(`${prefix}hl:*`)) {
      for (const entry of await client.lrange(list, 0, -1)) bytes += Buffer.byteLength(entry);
    }
    return {
      groups: metas.map((key) => key.slice(`${prefix}h:`.length)).sort(),
      bytes,
      counted: Number((await client.get(`${prefix}ht`)) ?? 0),
      used: await client.zcard(`${prefix}hu`),
    };
  }

  test('history.max_groups: past it the least recently used group is forgotten, one without members first', async () => {
    const [alice, publisher] = await cluster('lg:');
    await join(alice!, 'room.kept');
    await pub(publisher!, 'room.kept', 'kept');
    for (const group of ['room.a', 'room.b', 'room.c']) await pub(publisher!, group, 'hi');

    const now = await held('lg:');
    assert.deepEqual(now.groups, ['room.b', 'room.c', 'room.kept'], 'room.a, used least recently of those without members, went');
    assert.equal(now.used, MAX_GROUPS);
    const again = await pub(publisher!, 'room.a', 'again');
    assert.equal(again, 1, 'a forgotten group starts again, under a new epoch');
    const recovered = await join(await member(nodes.at(-2)!.port, 'lg:late'), 'room.kept', { offset: 0, epoch: (await join(alice!, 'room.kept')).joined.epoch as string });
    assert.deepEqual([recovered.joined.recovered, recovered.replayed.map((m) => m.data)], [true, ['kept']], 'the group with a member kept its history');
  });

  test('history.max_bytes: past it the oldest messages of the group appended to least recently go first', async () => {
    const [first, second] = await cluster('lb:');
    for (const client of [first!, second!]) for (const group of ['room.one', 'room.two']) await join(client, group);
    for (let i = 1; i <= 5; i++) await pub(first!, 'room.one', { i, TEXT });
    for (let i = 1; i <= 10; i++) await pub(second!, 'room.two', { i, TEXT });

    const now = await held('lb:');
    assert.ok(now.bytes <= MAX_BYTES, `${now.bytes} bytes kept`);
    assert.equal(now.counted, now.bytes, 'the counter is the sum of what is kept');
    second!.send({ op: 'history', group: 'room.one', since: 0, ref: 'one' });
    const one = await second!.next((f) => f.op === 'history' && f.ref === 'one');
    assert.deepEqual([one.msgs, one.offset], [[], 5], 'room.one, appended to least recently, lost all of its messages first');
    first!.send({ op: 'history', group: 'room.two', since: 0, ref: 'two' });
    const two = await first!.next((f) => f.op === 'history' && f.ref === 'two');
    const kept = (two.msgs as Array<{ offset: number }>).map((m) => m.offset);
    assert.ok(kept.length > 0 && kept.at(-1) === 10, 'room.two kept its newest');
    assert.deepEqual(kept, Array.from({ length: kept.length }, (_, i) => 11 - kept.length + i), 'and lost its oldest');
  });

  test('keys that vanish behind the scripts (expired, or evicted under maxmemory) are counted off', async () => {
    const [client] = await cluster('lv:');
    await join(client!, 'room.v');
    for (let i = 1; i <= 3; i++) await pub(client!, 'room.v', { i, TEXT });
    await nextMsgs(client!, 3);
    await redis!.client().del('lv:hl:room.v');
    await pub(client!, 'room.v', 'after the list went');
    const listGone = await held('lv:');
    assert.equal(listGone.counted, listGone.bytes, 'the list alone went: its bytes are counted off');
    await redis!.client().del('lv:h:room.v', 'lv:hl:room.v');
    await pub(client!, 'room.w', { TEXT });
    await pub(client!, 'room.v', 'after both went');
    const bothGone = await held('lv:');
    assert.equal(bothGone.counted, bothGone.bytes, 'both keys went: counted off when the group is next used');
  });
});

/**
 * Cluster mode: presence across nodes (per group and per user, forgotten within presence_ttl
 * when a node dies), and hostile input on the cluster's paths (odd names, floods of joins,
 * garbage on its channels, a bad redis_url).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RunningServer } from '../src/index.js';
import { sleep } from './helpers/broker.js';
import { member, type TestClient } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { announceSkip, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { runMain, startInProcess, startProcess, testConfig, type ServerProcess } from './helpers/server.js';

const skip = announceSkip('cluster-presence.test');

function clusterOverrides(url: string): Record<string, unknown> {
  return {
    websocket: { server: { shards: 1 }, groups: { require_membership: false } },
    cluster: { redis_url: url, presence_ttl: 2, sweep_interval: 0.05 },
  };
}

describe('presence across nodes', { skip }, () => {
  let redis: PrivateRedis;
  let here: RunningServer;
  let there: ServerProcess;
  const open: TestClient[] = [];
  before(async () => {
    redis = await startPrivateRedis();
    here = await startInProcess(clusterOverrides(redis.url));
    there = await startProcess(testConfig(clusterOverrides(redis.url)));
  });
  after(async () => {
    for (const client of open) client.close();
    await here?.close();
    if (there && there.child.exitCode === null && there.child.signalCode === null) await there.stop();
    await redis?.stop();
  });

  const eventually = async (what: string, check: () => Promise<boolean>): Promise<void> => {
    for (let i = 0; i < 200; i++) {
      if (await check()) return;
      await sleep(25);
    }
    assert.fail(`never: ${what}`);
  };

  test('which users are in a group and how many connections each has, on every node; per user, per node', async () => {
    for (const [port, user] of [[here.port, 'ann'], [there.port, 'ann'], [there.port, 'bob']] as const) open.push(await member(port, user, ['team']));
    open.push(await member(here.port, 'cid', ['other']));
    await eventually('the group to show both users', async () => {
      const users = await here.cluster!.groupPresence('team');
      return users.get('ann') === 2 && users.get('bob') === 1 && users.size === 2;
    });
    const ann = await here.cluster!.userPresence('ann');
    assert.equal(ann.size, 2, 'one entry per node');
    assert.deepEqual([...ann.values()], [1, 1]);
    assert.equal(ann.get(here.cluster!.node), 1);
  });

  test('leaving and closing take a connection out of presence at once', async () => {
    const dora = await member(here.port, 'dora', ['team']);
    await eventually('dora in the group', async () => (await here.cluster!.groupPresence('team')).has('dora'));
    dora.send({ op: 'leave', group: 'team', ref: 'l' });
    await dora.next((f) => f.op === 'left');
    assert.equal((await here.cluster!.groupPresence('team')).has('dora'), false);
    dora.close();
    await dora.closed;
    await eventually('dora offline', async () => (await here.cluster!.userPresence('dora')).size === 0);
  });

  test('a node that dies is forgotten within presence_ttl, its users with it', async () => {
    open.push(await member(there.port, 'ghost', ['team']));
    await eventually('ghost in the group', async () => (await here.cluster!.groupPresence('team')).has('ghost'));
    there.child.kill('SIGKILL');
    const killedAt = Date.now();
    await eventually('ghost forgotten', async () => !(await here.cluster!.groupPresence('team')).has('ghost'));
    assert.ok(Date.now() - killedAt <= 2000 + 1000, 'within presence_ttl (2 s) and a heartbeat');
    assert.equal((await here.cluster!.userPresence('bob')).size, 0);
    // Its fields are deleted too, not only hidden, once a live node's heartbeat saw it dead.
    const client = redis.client();
    await eventually('its presence fields deleted', async () => (await client.hlen('ocs:pu:bob')) === 0);
  });

  test('names are checked: a bad group name is a TypeError, not a Redis key', async () => {
    await assert.rejects(here.cluster!.groupPresence('bad name'), TypeError);
    await assert.rejects(here.cluster!.userPresence(''), TypeError);
  });
});

describe('hostile input on the cluster paths', { skip }, () => {
  const config = (url: string): Record<string, unknown> => testConfig(clusterOverrides(url));
  const cluster = clusterFixture({ nodes: [{ config }, { config }], stop: 'graceful' });
  const { nodes, open } = cluster;

  test('groups and users named __proto__ or constructor cross nodes like any other', async () => {
    const a = await member(nodes[0]!.port, 'constructor', ['__proto__']);
    const b = await member(nodes[1]!.port, '__proto__', ['__proto__']);
    open.push(a, b);
    a.send({ op: 'pub', group: '__proto__', data: { x: 1 } });
    assert.deepEqual((await b.next((f) => f.op === 'msg')).data, { x: 1 });
    a.send({ op: 'send', to: '__proto__', data: { y: 2 }, ref: 's' });
    await a.next((f) => f.op === 'ack' && f.ref === 's');
    const msg = await b.next((f) => f.op === 'msg' && f.ackReq === true);
    assert.deepEqual(msg.data, { y: 2 });
    b.send({ op: 'ack', id: msg.id });
  });

  test('a flood of joins and leaves leaves the node serving and subscribed to exactly its groups', async () => {
    const churn = await member(nodes[0]!.port, 'churner');
    open.push(churn);
    for (let i = 0; i < 300; i++) {
      churn.send({ op: 'join', group: `flood-${i}`, ref: `j${i}` });
      if (i % 2 === 1) churn.send({ op: 'leave', group: `flood-${i}`, ref: `l${i}` });
    }
    // Answers come in the order asked.
    const answers: string[] = [];
    while (answers.length < 450) answers.push(String((await churn.next((f) => f.op === 'joined' || f.op === 'left', 10_000)).ref));
    const expected: string[] = [];
    for (let i = 0; i < 300; i++) expected.push(`j${i}`, ...(i % 2 === 1 ? [`l${i}`] : []));
    assert.deepEqual(answers, expected);
    const client = cluster.redis.client();
    const channels = (await client.pubsub('CHANNELS', 'ocs:g:flood-*')) as string[];
    assert.equal(channels.length, 150, 'subscribed to the groups still joined, no more');
    const listener = await member(nodes[1]!.port, 'listener', ['flood-0']);
    open.push(listener);
    churn.send({ op: 'pub', group: 'flood-0', data: 'still here', ref: 'p' });
    assert.equal((await listener.next((f) => f.op === 'msg')).data, 'still here');
  });

  test('garbage published on a node\'s channels is dropped and counted; the node carries on', async () => {
    const client = cluster.redis.client();
    const listener = await member(nodes[0]!.port, 'steady', ['steady']);
    const speaker = await member(nodes[1]!.port, 'speaker', ['steady']);
    open.push(listener, speaker);
    const nodeChannels = (await client.pubsub('CHANNELS', 'ocs:n:*')) as string[];
    assert.equal(nodeChannels.length, 2);
    for (const channel of nodeChannels) {
      await client.publish(channel, Buffer.from([0xc1, 0xff, 0x00]));
      await client.publish(channel, 'not msgpack at all');
    }
    await client.publish('ocs:g:steady', Buffer.from([200])); // claims a 200-byte origin it does not have
    await client.publish('ocs:g:steady', Buffer.alloc(0));
    // Presence records (0xff) that are not: refused whole, while the real ones still come.
    listener.send({ op: 'join', group: 'steady', presence: true, ref: 'w' });
    await listener.next((f) => f.op === 'joined' && f.ref === 'w');
    await client.publish('ocs:g:steady', Buffer.concat([Buffer.from([0xff]), Buffer.from('-speaker\n+bad name')]));
    await client.publish('ocs:g:steady', Buffer.from([0xff]));
    open.push(await member(nodes[1]!.port, 'newcomer', ['steady']));
    const told: string[] = [];
    while (!told.includes('+newcomer')) {
      const event = await listener.next((f) => f.op === 'presence' && f.ref === undefined, 5000);
      for (const user of event.joins as string[]) told.push(`+${user}`);
      for (const user of event.leaves as string[]) told.push(`-${user}`);
    }
    assert.deepEqual(told.filter((change) => change !== '+steady' && change !== '+newcomer'), [], 'nothing but real joins');
    speaker.send({ op: 'pub', group: 'steady', data: 'fine', ref: 'p' });
    assert.equal((await listener.next((f) => f.op === 'msg', 5000)).data, 'fine');
    for (const node of nodes) assert.equal(node.child.exitCode, null);
  });

  test('a redis_url that is not redis:// or rediss:// stops the start with a line naming the key', async () => {
    const result = await runMain([], { WEBSOCKET_REDIS_URL: 'http://example.invalid' });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /cluster\.redis_url: must be redis:\/\/\S+ or rediss:\/\/\.\.\./);
  });
});

describe('a `presence` op of a large group in cluster mode (websocket.presence.max_list 2)', { skip }, () => {
  const config = (url: string): Record<string, unknown> => {
    const overrides = clusterOverrides(url) as { websocket: Record<string, unknown> };
    return testConfig({ ...overrides, websocket: { ...overrides.websocket, presence: { max_list: 2 } } });
  };
  const cluster = clusterFixture({ nodes: { node: { config, inProcess: true } }, store: true });
  const { open } = cluster;

  /** How many hashes Redis has read whole (HGETALL): a member list read is one. */
  const wholeReads = async (): Promise<number> => Number(/cmdstat_hgetall:calls=(\d+)/.exec(await cluster.store.info('commandstats'))?.[1] ?? 0);
  const ask = async (client: TestClient, group: string, ref: string, counts = false): Promise<Record<string, unknown>> => {
    client.send({ op: 'presence', group, ref, ...(counts ? { counts } : {}) });
    return client.next((f) => f.op === 'presence' && f.ref === ref);
  };

  test('over max_list users, or asked for counts, the answer is its totals, and Redis reads no member for it; at most max_list, its users listed', async () => {
    const crowd = [await member(cluster.nodes.node.port, 'c1', ['crowd', 'pair']), await member(cluster.nodes.node.port, 'c2', ['crowd', 'pair']), await member(cluster.nodes.node.port, 'c3', ['crowd'])];
    open.push(...crowd, await member(cluster.nodes.node.port, 'c1', ['crowd']));
    const before = await wholeReads();
    for (let n = 0; n < 50; n++) {
      const answer = await ask(crowd[0]!, 'crowd', `big${n}`);
      assert.deepEqual([answer.users, answer.total], [undefined, { users: 3, conns: 4 }]);
      const counts = await ask(crowd[1]!, 'pair', `counts${n}`, true);
      assert.deepEqual([counts.users, counts.total], [undefined, { users: 2, conns: 2 }]);
    }
    assert.equal(await wholeReads(), before, 'no member list read');
    const small = await ask(crowd[0]!, 'pair', 'small');
    assert.deepEqual([small.users, small.total], [{ c1: 1, c2: 1 }, { users: 2, conns: 2 }]);
    assert.equal(await wholeReads(), before + 1);
  });
});

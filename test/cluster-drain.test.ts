/**
 * A pm2 reload of a cluster node, on real processes and a private Redis: the new process takes
 * no store lease and serves at once (what is stored is delivered by it while the old one still
 * runs); the old one's drain leaves the cluster first, so nothing more is routed to it, closes
 * its clients with 1012 and exits 0; what it had delivered unacknowledged, and what came for its
 * users during the drain, is delivered by the node they reconnect to; nothing acknowledged
 * comes again.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sleep } from './helpers/broker.js';
import { member, type Frame, type TestClient } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { announceSkip, nodeConfig, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { startProcess, type ServerProcess } from './helpers/server.js';

const skip = announceSkip('cluster-drain.test');
type Member = TestClient & { welcome: Frame };

describe('a cluster node reloaded (drain, then the new process)', { skip }, () => {
  let redis: PrivateRedis;
  let old: ServerProcess;
  let fresh: ServerProcess | null = null;
  const open: TestClient[] = [];
  const on = async (node: ServerProcess, user: string): Promise<Member> => {
    const client = await member(node.port, user);
    open.push(client);
    return client;
  };
  const nodeOf = (client: Member): string => String(client.welcome.sid).split('.')[0]!;

  before(async () => {
    redis = await startPrivateRedis();
    // A longer ack timeout than the other cluster tests: the unacknowledged message must still be in flight when its user comes back.
    old = await startProcess(nodeConfig(redis.url, 'reload:', 1, { websocket: { delivery: { ack_timeout: 30, max_backoff: 30 } } }));
  });
  after(async () => {
    for (const client of open) client.close();
    await Promise.all([old, fresh].map((node) => (node && node.child.exitCode === null ? node.stop() : null)));
    await redis?.stop();
  });

  test('the old node leaves the cluster as its drain begins; its users get what was in flight and what came meanwhile on the new node, once', async () => {
    const user = await on(old, 'traveller');
    const sender = await on(old, 'friend');
    for (const [ref, text] of [['a', 'acked'], ['b', 'in flight']]) {
      sender.send({ op: 'send', to: 'traveller', data: { text }, ref });
      await sender.next((f) => f.op === 'ack' && f.ref === ref);
    }
    const acked = await user.next((f) => f.op === 'msg' && (f.data as { text: string }).text === 'acked');
    user.send({ op: 'ack', id: acked.id });
    const inFlight = await user.next((f) => f.op === 'msg' && (f.data as { text: string }).text === 'in flight');
    const client = redis.client();
    for (let i = 0; i < 100 && (await client.zcard('reload:q:u:traveller')) > 1; i++) await sleep(20);
    assert.equal(await client.zcard('reload:q:u:traveller'), 1, 'the ack reached Redis');

    // The reload: the new process starts while the old one runs, and serves at once (no lease to wait for).
    const started = Date.now();
    fresh = await startProcess(nodeConfig(redis.url, 'reload:', 1));
    assert.ok(Date.now() - started < 15_000);
    const stored = await on(fresh, 'offline-until-now');
    assert.equal(stored.welcome.pending, 0);
    sender.send({ op: 'send', to: 'offline-until-now', data: { text: 'stored' }, ref: 'c' });
    await sender.next((f) => f.op === 'ack' && f.ref === 'c');
    assert.deepEqual((await stored.next((f) => f.op === 'msg')).data, { text: 'stored' }, 'the new node delivers while the old one runs');

    // The old one drains: it is gone from the cluster's live nodes before its clients are closed.
    const oldNode = nodeOf(user);
    const exited = old.stop('SIGTERM');
    for (let i = 0; i < 200 && (await client.zscore('reload:nodes', oldNode)) !== null; i++) await sleep(10);
    assert.equal(await client.zscore('reload:nodes', oldNode), null, 'the draining node left the cluster');
    // Sent now from the new node: routed to nobody (the old node is out), so it waits for the user's return.
    const other = await on(fresh, 'other-friend');
    other.send({ op: 'send', to: 'traveller', data: { text: 'during the drain' }, ref: 'd' });
    await other.next((f) => f.op === 'ack' && f.ref === 'd');
    const closed = await user.closed;
    assert.equal(closed.code, 1012, 'closed as restarting');
    assert.equal(
      user.frames.filter((f) => f.op === 'msg' && (f.data as { text: string }).text === 'during the drain').length,
      0,
      'nothing was routed to the draining node',
    );
    assert.equal(await exited, 0, 'the old process drained and exited 0');

    // The user comes back, on the new node: the message in flight and the one that waited, and not the acknowledged one.
    const back = await on(fresh, 'traveller');
    assert.equal(back.welcome.pending, 2);
    const got = new Map<string, unknown>();
    while (got.size < 2) {
      const msg = await back.next((f) => f.op === 'msg');
      got.set((msg.data as { text: string }).text, msg.id);
      back.send({ op: 'ack', id: msg.id });
    }
    assert.deepEqual([...got.keys()].sort(), ['during the drain', 'in flight']);
    assert.equal(got.get('in flight'), inFlight.id, 'the same message, delivered again');
    back.send({ op: 'ping', t: 0 });
    await back.next((f) => f.op === 'pong');
    assert.equal(back.frames.filter((f) => f.op === 'msg').length, 0, 'the acknowledged message never came again');
  });
});

/** Holds Redis busy for ARGV[1] microseconds (what DEBUG SLEEP does, which Redis 7 refuses by default). */
const BUSY = `local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start > tonumber(ARGV[1])
return 1`;

describe('joins still on their way to Redis when a node starts its drain', { skip }, () => {
  const cluster = clusterFixture({ nodes: { node: { prefix: 'late:', extra: { websocket: { server: { drain_window: 10, shutdown_timeout: 20 } } } } } });

  test('are not written after the node left the cluster: no member of it is listed while it drains', async () => {
    const client = await member(cluster.nodes.node.port, 'late');
    const name = String(client.welcome.sid).split('.')[0]!;
    // Redis held busy: the node's first join waits in it, the others behind it (one connection's
    // member writes run one after another), and the drain begins meanwhile.
    const store = cluster.redis.client();
    const busy = store.eval(BUSY, 0, 1_000_000);
    await sleep(20);
    for (let i = 0; i < 300; i++) client.send({ op: 'join', group: `g${i}`, ref: `j${i}` });
    await sleep(300);
    const exited = cluster.nodes.node.stop('SIGTERM');
    await busy;
    for (let i = 0; i < 200 && (await store.zscore('late:nodes', name)) !== null; i++) await sleep(10);
    assert.equal(await store.zscore('late:nodes', name), null, 'the draining node left the cluster');
    // Its key list empties as it forgets itself; the joins queued behind must not fill it again.
    for (let i = 0; i < 200 && (await store.scard(`late:nk:${name}`)) > 0; i++) await sleep(10);
    const listed: number[] = [];
    for (let i = 0; i < 50; i++) {
      listed.push(await store.scard(`late:nk:${name}`));
      await sleep(10);
    }
    assert.deepEqual(new Set(listed), new Set([0]), 'nothing of the draining node is listed again');
    let fields = 0;
    for (let i = 0; i < 300; i++) fields += await store.hexists(`late:pg:g${i}`, `${name}\n${client.welcome.sid}`);
    assert.equal(fields, 0, 'no group lists its member');
    client.close();
    await exited;
  });
});

/**
 * What a node's members do while it writes its presence again after losing Redis (the resync:
 * connected again, not yet up) is written too, and a drain that begins then still leaves the
 * cluster. Before, a join, leave or close in that window was never written (the resync wrote
 * the members as they were when it began, and nothing wrote what changed after), and a drain
 * begun then left the node and its members listed after it had gone. Real node processes on a
 * private Redis; the node's connections are dropped (CLIENT KILL) while writes are paused
 * (CLIENT PAUSE WRITE), so that its resync reads what it wrote, then waits to write.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import { sleep } from './helpers/broker.js';
import { member } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { nextMsgs, settle } from './helpers/messaging.js';
import { announceSkip } from './helpers/redis.js';

const skip = announceSkip('cluster-resync-window.test');

/** Writes paused for `ms` and the node's connections dropped: it reconnects and its resync waits on the pause. */
async function resyncHeldUp(store: Redis, ms = 2000): Promise<void> {
  await store.call('CLIENT', 'PAUSE', String(ms), 'WRITE');
  for (const line of String(await store.call('CLIENT', 'LIST')).split('\n')) {
    const id = /id=(\d+)/.exec(line)?.[1];
    if (id && /name=ocs-node/.test(line)) await store.call('CLIENT', 'KILL', 'ID', id);
  }
  await sleep(900); // reconnected; the resync has read its key list and waits to write
}

describe('members that change while their node resyncs', { skip, timeout: 60_000 }, () => {
  const cluster = clusterFixture({ nodes: { node: { prefix: 'rw:' } }, store: true });

  test('a leave is written: the connection is no longer listed, and presence says so', async () => {
    const ann = await member(cluster.nodes.node.port, 'ann', ['room']);
    const field = `${String(ann.welcome.sid).split('.')[0]}\n${ann.welcome.sid}`;
    for (let i = 0; i < 100 && !(await cluster.store.hexists('rw:pg:room', field)); i++) await sleep(20);
    await resyncHeldUp(cluster.store);
    ann.send({ op: 'leave', group: 'room', ref: 'bye' });
    await ann.next((f) => f.ref === 'bye', 10_000);
    await sleep(2500); // the pause is over, the resync done
    assert.equal(await cluster.store.hexists('rw:pg:room', field), 0);
    assert.equal(await cluster.store.hget('rw:pc:room', 'ann'), null);
    const bob = await member(cluster.nodes.node.port, 'bob', ['room']);
    bob.send({ op: 'presence', group: 'room', ref: 'p' });
    assert.deepEqual((await bob.next((f) => f.ref === 'p', 10_000)).users, { bob: 1 });
    ann.close();
    bob.close();
  });

  test('a join is written: the member is listed, beside one who was there before', async () => {
    const eve = await member(cluster.nodes.node.port, 'eve', ['hall']);
    const carl = await member(cluster.nodes.node.port, 'carl');
    const field = `${String(carl.welcome.sid).split('.')[0]}\n${carl.welcome.sid}`;
    await sleep(200);
    await resyncHeldUp(cluster.store);
    carl.send({ op: 'join', group: 'hall', ref: 'hi' });
    await carl.next((f) => f.ref === 'hi', 10_000);
    await sleep(2500);
    assert.equal(await cluster.store.hexists('rw:pg:hall', field), 1);
    carl.send({ op: 'presence', group: 'hall', ref: 'p2' });
    assert.deepEqual((await carl.next((f) => f.ref === 'p2', 10_000)).users, { carl: 1, eve: 1 });
    carl.close();
    eve.close();
  });

  test('a close is written: the user is not online on this node any more', async () => {
    const dora = await member(cluster.nodes.node.port, 'dora', ['den']);
    const name = String(dora.welcome.sid).split('.')[0]!;
    await sleep(300);
    await resyncHeldUp(cluster.store);
    dora.close();
    await sleep(2500);
    assert.equal(await cluster.store.hget('rw:pu:dora', name), null);
    assert.equal(await cluster.store.hlen('rw:pg:den'), 0);
  });
});

describe('a drain that begins while the node resyncs', { skip, timeout: 60_000 }, () => {
  const cluster = clusterFixture({ nodes: { node: { prefix: 'dr:', extra: { websocket: { server: { drain_window: 10, shutdown_timeout: 20 } } } } } });

  test('leaves the cluster all the same: neither the node nor its members are listed after it', async () => {
    const store = cluster.redis.client();
    const client = await member(cluster.nodes.node.port, 'late', ['g1', 'g2']);
    const name = String(client.welcome.sid).split('.')[0]!;
    const field = `${name}\n${client.welcome.sid}`;
    await sleep(300);
    // Shorter than the stop's farewell (1 s after the drain's closes): a Redis frozen for longer leaves the node to be forgotten by the others.
    await resyncHeldUp(store, 1500);
    const exited = cluster.nodes.node.stop('SIGTERM');
    await sleep(3000); // the pause is over; the resync has written, and the node left again
    assert.equal(await store.zscore('dr:nodes', name), null, 'the draining node is not in the cluster');
    assert.equal((await store.hexists('dr:pg:g1', field)) + (await store.hexists('dr:pg:g2', field)), 0, 'no group lists its member');
    client.close();
    await exited;
    console.error(cluster.nodes.node.stderr().split('\n').filter((l) => /RESYNC|PAUSE|STOP/.test(l)).join(' | '), 'beat', await store.zscore('dr:nodes', name), Date.now());
  });
});

describe("a node's rescan after an outage", { skip, timeout: 60_000 }, () => {
  const cluster = clusterFixture({
    // A window (and so a resend budget) of 600 per ack_timeout, which is long: nothing refills it in the test.
    nodes: { node: { prefix: 'rb:', extra: { websocket: { delivery: { ack_timeout: 300, max_backoff: 300, max_inflight_per_user: 600 } } } } },
  });

  test("spends none of a user's resend budget: a connection after it is still handed what is in flight", async () => {
    const store = cluster.redis.client();
    const sender = await member(cluster.nodes.node.port, 'sender');
    const first = await member(cluster.nodes.node.port, 'reader');
    for (let i = 0; i < 600; i++) sender.send({ op: 'send', to: 'reader', data: i, ref: `r${i}` });
    for (let i = 0; i < 600; i++) await sender.next((f) => f.ref === `r${i}`, 20_000);
    assert.equal((await nextMsgs(first, 600, 20_000)).length, 600);
    // An outage: the node resyncs and rescans its users (CONNECT for each), reader included.
    await resyncHeldUp(store, 300);
    await sleep(1500);
    first.close();
    await first.closed;
    const again = await member(cluster.nodes.node.port, 'reader');
    assert.equal((await nextMsgs(again, 600, 10_000)).length, 600, 'all 600 in flight handed over');
    again.close();
    sender.close();
  });
});

describe('a connection opened while its node is cut off from Redis', { skip, timeout: 60_000 }, () => {
  const cluster = clusterFixture({
    // A long ack_timeout: what is in flight would reach the new connection only at its deadline, long after the test.
    nodes: { node: { prefix: 'rc:', extra: { websocket: { delivery: { ack_timeout: 300, max_backoff: 300 } } } } },
  });

  test('is handed what is in flight to its user once Redis is back, before what comes after, and the others get nothing twice', async () => {
    const store = cluster.redis.client();
    const sender = await member(cluster.nodes.node.port, 'sender');
    const first = await member(cluster.nodes.node.port, 'reader');
    for (let i = 0; i < 5; i++) sender.send({ op: 'send', to: 'reader', data: i, ref: `r${i}` });
    for (let i = 0; i < 5; i++) await sender.next((f) => f.ref === `r${i}`, 10_000);
    assert.deepEqual((await nextMsgs(first, 5)).map((m) => m.data), [0, 1, 2, 3, 4]);
    await resyncHeldUp(store, 2500);
    const late = await member(cluster.nodes.node.port, 'reader'); // welcomed without Redis: nothing listed for it
    await sleep(2500); // the pause is over, the resync and its rescan done
    for (let i = 5; i < 10; i++) sender.send({ op: 'send', to: 'reader', data: i, ref: `r${i}` });
    assert.deepEqual((await nextMsgs(late, 10, 10_000)).map((m) => m.data), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.deepEqual((await nextMsgs(first, 5, 10_000)).map((m) => m.data), [5, 6, 7, 8, 9]);
    await settle(first);
    assert.equal(first.frames.filter((f) => f.op === 'msg' || f.op === 'batch').length, 0, 'nothing more for the first connection');
    first.close();
    late.close();
    sender.close();
    await store.quit();
  });
});

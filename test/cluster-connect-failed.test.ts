/**
 * A connection whose CONNECT fails while its node stays up (an error reply, a timeout) is
 * welcomed with pending 0, and what another node routed to its user while that CONNECT ran,
 * held for it meanwhile, goes to it then: it was dropped, and reached the connection only at the
 * messages' ack deadlines (found by a review of 2026-12-07). Then its presence is written (a
 * CONNECT refused before its write left the user's only connection here unrouted to until the
 * next outage) and what waits for the user is pumped. Real node processes; the node
 * reaches its private Redis through a TCP proxy that slows its commands, so that the CONNECT is
 * in flight while the routes arrive.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sleep } from './helpers/broker.js';
import { member } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { nextMsgs } from './helpers/messaging.js';
import { announceSkip } from './helpers/redis.js';

const skip = announceSkip('cluster-connect-failed.test');
// Deadlines minutes away: no redelivery explains what arrives.
const LONG = { websocket: { delivery: { ack_timeout: 300, max_backoff: 300 } } };

describe('a connection whose CONNECT fails while its node stays up', { skip, timeout: 60_000 }, () => {
  const cluster = clusterFixture({ nodes: { node: { prefix: 'cf:', extra: LONG, throughProxy: true }, other: { prefix: 'cf:', extra: LONG } }, store: true });

  test('gets at once what was routed to its user while the CONNECT ran', async () => {
    const first = await member(cluster.nodes.node.port, 'reader');
    const sender = await member(cluster.nodes.other.port, 'sender');
    await sleep(300);
    // Only CONNECT reads this key (the queue index's count of scheduled messages): of the wrong type, it fails.
    await cluster.store.hset('cf:qs:reader', 'x', '1');
    // The node's commands reach Redis 400 ms late; the other node's routes, and its records to this node, do not.
    cluster.proxy.delayUpstreamMs = 400;
    const opening = member(cluster.nodes.node.port, 'reader');
    await sleep(150);
    for (let i = 0; i < 3; i++) sender.send({ op: 'send', to: 'reader', data: i, ref: `r${i}` });
    for (let i = 0; i < 3; i++) await sender.next((f) => f.ref === `r${i}`, 10_000);
    assert.deepEqual((await nextMsgs(first, 3)).map((m) => m.data), [0, 1, 2], 'the open connection has them');
    const late = await opening;
    cluster.proxy.delayUpstreamMs = 0;
    assert.equal(late.welcome.pending, 0, 'welcomed without a backlog');
    assert.ok(cluster.nodes.node.logs.some((l) => /WRONGTYPE/.test(JSON.stringify(l))), 'its CONNECT failed');
    assert.deepEqual((await nextMsgs(late, 3, 3000)).map((m) => m.data), [0, 1, 2], 'the new one gets them too, at once');
    await cluster.store.del('cf:qs:reader');
    first.close();
    late.close();
    sender.close();
  });

  test("its user's only connection on the node: what waits for the user, and what is sent after, reaches it", async () => {
    const sender = await member(cluster.nodes.other.port, 'sender2');
    // Stored while the user is offline: they wait.
    for (let i = 0; i < 2; i++) sender.send({ op: 'send', to: 'solo', data: i, ref: `w${i}` });
    for (let i = 0; i < 2; i++) await sender.next((f) => f.ref === `w${i}`, 10_000);
    await cluster.store.hset('cf:qs:solo', 'x', '1');
    cluster.proxy.delayUpstreamMs = 500;
    const late = await member(cluster.nodes.node.port, 'solo');
    // Welcomed as its CONNECT failed: what the node sends next reaches Redis 500 ms later, without the bad key.
    await cluster.store.del('cf:qs:solo');
    cluster.proxy.delayUpstreamMs = 0;
    assert.equal(late.welcome.pending, 0, 'welcomed without a backlog');
    assert.deepEqual((await nextMsgs(late, 2, 4000)).map((m) => m.data), [0, 1], 'what waited for its user, with no message or ack to pump it');
    for (let i = 2; i < 5; i++) sender.send({ op: 'send', to: 'solo', data: i, ref: `r${i}` });
    for (let i = 2; i < 5; i++) await sender.next((f) => f.ref === `r${i}`, 10_000);
    assert.deepEqual((await nextMsgs(late, 3, 4000)).map((m) => m.data), [2, 3, 4], 'routed to it: its presence is in Redis');
    late.close();
    sender.close();
  });

  test('a CONNECT refused before it wrote anything (Redis busy with a script): the connection is routed to once Redis answers', async () => {
    const sender = await member(cluster.nodes.other.port, 'sender3');
    await cluster.store.config('SET', 'busy-reply-threshold', '50');
    const busy = cluster.redis.client();
    // Every other command is answered BUSY while it runs; the CONNECT too, before it wrote the presence.
    const running = busy.eval("local t = redis.call('TIME'); local s = t[1] * 1000 + t[2] / 1000; repeat t = redis.call('TIME') until t[1] * 1000 + t[2] / 1000 > s + 1500; return 1", 0);
    await sleep(200);
    const late = await member(cluster.nodes.node.port, 'solo2');
    assert.equal(late.welcome.pending, 0, 'welcomed without a backlog');
    await running;
    await busy.quit();
    assert.ok(cluster.nodes.node.logs.some((l) => /BUSY/.test(JSON.stringify(l))), 'its CONNECT failed');
    await cluster.store.config('SET', 'busy-reply-threshold', '5000');
    await sleep(2500);
    for (let i = 0; i < 3; i++) sender.send({ op: 'send', to: 'solo2', data: i, ref: `r${i}` });
    for (let i = 0; i < 3; i++) await sender.next((f) => f.ref === `r${i}`, 10_000);
    assert.deepEqual((await nextMsgs(late, 3, 4000)).map((m) => m.data), [0, 1, 2], 'routed to it: its presence is in Redis');
    const listedBy: string[] = [];
    for (const id of await cluster.store.zrange('cf:nodes', '0', '-1')) if (await cluster.store.sismember(`cf:nk:${id}`, 'cf:pu:solo2')) listedBy.push(id);
    assert.equal(listedBy.length, 1, "in its node's keys, which forgetting the node clears");
    late.close();
    sender.close();
  });
});

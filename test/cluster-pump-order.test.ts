/**
 * Messages a node's PUMP claimed reach their connections from that node: from its reply, or as
 * its records to the other nodes, sent once the reply is back. A message another node claimed
 * right after (its route, once nothing waited, or its own PUMP) comes from that node, over
 * another connection: it must not overtake them. A chaos review (a node cut off from Redis four
 * times under a steady stream of sends, test/cluster-outage-chaos.test.ts) saw it in 6 of 13
 * runs: the rescan's PUMP claimed 1162-1203 of a sender's messages, which emptied what waited;
 * the other node routed 1204-1206 at once, and its records reached the reader's node ahead of
 * the PUMP's reply (once, the other way round: another node's PUMP's records of 1049-1128 came
 * after what the rescan's PUMP claimed next). Now a PUMP that claimed some holds the user for
 * its node until that node's next PUMP, sent once it has handed the first one's out, which
 * claims what waited meanwhile.
 * Here the pumping node reaches Redis through a TCP proxy that holds its commands 300 ms (its
 * records leave that much later), so the overtaking is not left to chance.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sleep } from './helpers/broker.js';
import { member } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { nextMsgs, settle, unreadData } from './helpers/messaging.js';
import { announceSkip } from './helpers/redis.js';

const skip = announceSkip('cluster-pump-order.test');
// Deadlines minutes away: no redelivery explains what arrives. A window of 10: what comes
// past it waits for an ack, and the acking node's PUMP claims it.
const WINDOW = { websocket: { delivery: { ack_timeout: 300, max_backoff: 300, max_inflight_per_user: 10 } } };

describe("a node's PUMP, and another node's claim right after it", { skip, timeout: 60_000 }, () => {
  const cluster = clusterFixture({ nodes: { pumping: { prefix: 'po:', extra: WINDOW, throughProxy: true }, other: { prefix: 'po:', extra: WINDOW } } });

  test("the user's connection on the routing node gets what the PUMP claimed first, then the newer message", async () => {
    const reader = await member(cluster.nodes.pumping.port, 'reader');
    const watcher = await member(cluster.nodes.other.port, 'reader');
    const sender = await member(cluster.nodes.other.port, 'sender');
    await sleep(300);
    // 10 in flight, 10-12 wait for room.
    for (let i = 0; i < 13; i++) sender.send({ op: 'send', to: 'reader', data: i, ref: `r${i}` });
    for (let i = 0; i < 13; i++) assert.equal((await sender.next((f) => f.ref === `r${i}`, 10_000)).op, 'ack');
    const first = await nextMsgs(reader, 10);
    assert.deepEqual(first.map((m) => m.data), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    cluster.proxy.delayUpstreamMs = 300;
    // Its ack makes room: the reader's node pumps 10-12, hands them to the reader from the
    // reply, and its records of them reach the watcher's node 300 ms later.
    reader.send({ op: 'ack', ids: first.map((m) => m.id) });
    assert.deepEqual((await nextMsgs(reader, 3, 5000)).map((m) => m.data), [10, 11, 12]);
    sender.send({ op: 'send', to: 'reader', data: 13, ref: 'r13' });
    assert.equal((await sender.next((f) => f.ref === 'r13', 10_000)).op, 'ack');
    await sleep(1500);
    await settle(watcher);
    await settle(reader);
    assert.deepEqual(unreadData(watcher), Array.from({ length: 14 }, (_, k) => k), 'in the order sent, each once');
    assert.deepEqual(unreadData(reader), [13]);
    cluster.proxy.delayUpstreamMs = 0;
    for (const c of [reader, watcher, sender]) c.close();
  });

  test("another node's PUMP right after claims nothing: what it would have claimed comes after, from the first node's next PUMP", async () => {
    const reader = await member(cluster.nodes.pumping.port, 'reader2');
    const watcher = await member(cluster.nodes.other.port, 'reader2');
    const sender = await member(cluster.nodes.other.port, 'sender2');
    await sleep(300);
    // 10 in flight, 10-15 wait for room.
    for (let i = 0; i < 16; i++) sender.send({ op: 'send', to: 'reader2', data: i, ref: `r${i}` });
    for (let i = 0; i < 16; i++) assert.equal((await sender.next((f) => f.ref === `r${i}`, 10_000)).op, 'ack');
    const first = await nextMsgs(reader, 10);
    assert.deepEqual(first.map((m) => m.data), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    cluster.proxy.delayUpstreamMs = 300;
    // Room for 5: the reader's node pumps 10-14 (the window is full again), its records of
    // them 300 ms on their way to the watcher's node.
    reader.send({ op: 'ack', ids: first.slice(0, 5).map((m) => m.id) });
    assert.deepEqual((await nextMsgs(reader, 5, 5000)).map((m) => m.data), [10, 11, 12, 13, 14]);
    // Room for 5 more, through the watcher's node: its PUMP would claim 15 and hand it out at once.
    watcher.send({ op: 'ack', ids: first.slice(5).map((m) => m.id) });
    await sleep(1500);
    await settle(watcher);
    assert.deepEqual(unreadData(watcher), Array.from({ length: 16 }, (_, k) => k), 'in the order sent, each once');
    cluster.proxy.delayUpstreamMs = 0;
    for (const c of [reader, watcher, sender]) c.close();
  });
});

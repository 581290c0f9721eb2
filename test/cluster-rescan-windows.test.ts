/**
 * What a node knows it handed out, after it was cut off from Redis or found itself forgotten,
 * decides what the rescan hands each connection held through it:
 * - a message handed to some connections of the user only (a new connection's backlog while a
 *   forgotten node resyncs) is still handed to those held, which lack it (a review of
 *   2026-12-07 reasoned that the node's own record, per node, left it out for them until its
 *   ack deadline);
 * - a message acknowledged between the pages of the rescan's listing (over 500 in flight) is not
 *   handed again to the connection that acknowledged it (the same review reasoned that the ack,
 *   which made the node forget it had handed it out, brought it once more).
 * Real node processes; the node under test reaches its private Redis through a TCP proxy,
 * which slows its round trips so that the test's steps land where they must.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sleep } from './helpers/broker.js';
import { member } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { nextMsgs, settle, unreadData } from './helpers/messaging.js';
import { announceSkip } from './helpers/redis.js';

const skip = announceSkip('cluster-rescan-windows.test');
// Deadlines minutes away: no redelivery explains what arrives.
const LONG = { websocket: { delivery: { ack_timeout: 300, max_backoff: 300 } } };

/** Polls Redis every 5 ms until `check` holds. */
async function untilRedis(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  for (const end = Date.now() + timeoutMs; !(await check()); await sleep(5)) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
  }
}

describe('a forgotten node whose user opens a connection while it resyncs', { skip, timeout: 60_000 }, () => {
  const cluster = clusterFixture({ nodes: { slow: { prefix: 'rw:', extra: LONG, throughProxy: true }, other: { prefix: 'rw:', extra: LONG } }, store: true });

  test('the connection held through it gets what the new connection was handed', async () => {
    const held = await member(cluster.nodes.slow.port, 'reader');
    const sender = await member(cluster.nodes.other.port, 'sender');
    await sleep(500);
    const [node] = await cluster.store.hkeys('rw:pu:reader'); // the slow node: the reader is only there
    cluster.proxy.delayUpstreamMs = 300; // its resync takes round trips of 300 ms: the new CONNECT runs before its rescan
    // Forgotten: routes leave the node out, and what is sent to the reader waits.
    await cluster.store.zrem('rw:nodes', node!);
    for (let i = 0; i < 5; i++) sender.send({ op: 'send', to: 'reader', data: i, ref: `r${i}` });
    for (let i = 0; i < 5; i++) assert.equal((await sender.next((f) => f.ref === `r${i}`, 10_000)).op, 'ack');
    // Its heartbeat wrote it back and found it forgotten: it holds `held` and resyncs.
    await untilRedis('the heartbeat', async () => (await cluster.store.zscore('rw:nodes', node!)) !== null);
    const fresh = await member(cluster.nodes.slow.port, 'reader'); // its CONNECT claims the five
    await sleep(3000);
    await settle(fresh);
    await settle(held);
    assert.deepEqual(unreadData(fresh), [0, 1, 2, 3, 4]);
    assert.deepEqual(unreadData(held), [0, 1, 2, 3, 4], 'the rescan hands them to the connection held through it');
    cluster.proxy.delayUpstreamMs = 0;
    sender.close();
    held.close();
    fresh.close();
  });
});

describe('an ack between the pages of a rescan', { skip, timeout: 60_000 }, () => {
  const cluster = clusterFixture({ nodes: { node: { prefix: 'ra:', extra: LONG, throughProxy: true } }, store: true });

  test('the acknowledged message is not handed again', async () => {
    const reader = await member(cluster.nodes.node.port, 'reader');
    const sender = await member(cluster.nodes.node.port, 'sender');
    // 600 in flight, unacknowledged: the rescan lists them in two scripts (500, then 100).
    for (let i = 0; i < 600; i++) sender.send({ op: 'send', to: 'reader', data: i, ref: `r${i}` });
    for (let i = 0; i < 600; i++) await sender.next((f) => f.ref === `r${i}`, 10_000);
    const [first] = await nextMsgs(reader, 600);
    const [id] = await cluster.store.zrange('ra:nodes', '0', '-1');
    cluster.proxy.refuse = true;
    await sleep(1000);
    // Only heartbeats write P nb (the resync's presence writes P nodes too).
    const beat = await cluster.store.zscore('ra:nb', id!);
    cluster.proxy.delayUpstreamMs = 500; // each of the rescan's scripts takes 500 ms to reach Redis
    cluster.proxy.refuse = false;
    // The resync's heartbeat ran: the node is up and its rescan's first script is on its way.
    await untilRedis('the resync', async () => (await cluster.store.zscore('ra:nb', id!)) !== beat);
    await sleep(50);
    reader.send({ op: 'ack', ids: [first!.id] }); // runs after the first script, before the page
    await sleep(3000);
    await settle(reader);
    assert.deepEqual(reader.frames.filter((f) => f.op === 'err'), [], 'the ack was taken');
    assert.deepEqual(unreadData(reader), [], 'nothing again: it had all, and acknowledged the first');
    cluster.proxy.delayUpstreamMs = 0;
    sender.close();
    reader.close();
  });
});

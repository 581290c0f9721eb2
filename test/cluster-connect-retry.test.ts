/**
 * A connection whose CONNECT fails while its node stays up (an error reply, a timeout) lacks
 * its user's messages that were in flight before it opened: CONNECT's listing is what hands a
 * new connection those, and it was lost. Once Redis answers again (probed every two command
 * timeouts) the node lists them again and hands the connection those it was not handed since,
 * each once; until 2026-12-07 they reached it only at their ack deadlines. Real node processes;
 * the node reaches its private Redis through a TCP proxy that can slow its commands.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sleep } from './helpers/broker.js';
import { member, type TestClient } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { nextMsgs, unreadData } from './helpers/messaging.js';
import { announceSkip } from './helpers/redis.js';

const skip = announceSkip('cluster-connect-retry.test');
// Deadlines minutes away: no redelivery explains what arrives. A heartbeat every 10 s
// (presence_ttl 30): a slow Redis times out a command without the node going down.
const extra = { websocket: { delivery: { ack_timeout: 300, max_backoff: 300 } }, cluster: { command_timeout: 0.5, presence_ttl: 30 } };

async function sendTo(sender: TestClient, user: string, from: number, to: number): Promise<void> {
  for (let i = from; i < to; i++) sender.send({ op: 'send', to: user, data: i, ref: `${user}${i}` });
  for (let i = from; i < to; i++) await sender.next((f) => f.ref === `${user}${i}`, 10_000);
}

/**
 * `late` gets `before` (in flight to its user before it opened), once Redis answers, after
 * `early` (routed to it before that) and ahead of or after `after` (sent after its welcome:
 * at once, so ahead of the relisting, unless that came first on a slow host); each once.
 */
async function assertCaughtUp(late: TestClient, first: TestClient, openedAt: number, early: number[], before: number[], after: number[]): Promise<void> {
  const got = (await nextMsgs(late, early.length + before.length + after.length, 15_000)).map((m) => m.data);
  const took = Date.now() - openedAt;
  process.stderr.write(`cluster-connect-retry: the new connection had ${JSON.stringify(got)} ${took} ms after its welcome\n`);
  const orders = [[...early, ...after, ...before], [...early, ...before, ...after]].map((order) => JSON.stringify(order));
  assert.ok(orders.includes(JSON.stringify(got)), `in order, each once: ${JSON.stringify(got)}`);
  assert.ok(took < 15_000, 'well before the deadlines (300 s)');
  await sleep(1500);
  assert.deepEqual(unreadData(late), [], 'nothing twice');
  assert.deepEqual(unreadData(first), [], 'the open connection got nothing again');
}

describe('a connection whose CONNECT fails while its node stays up', { skip, timeout: 90_000 }, () => {
  const cluster = clusterFixture({ nodes: { node: { prefix: 'cr:', extra, throughProxy: true }, other: { prefix: 'cr:', extra } }, store: true });

  /** `user`'s first connection, on the node, with 0-2 in flight to it (not acknowledged), and a sender on the other node. */
  async function inFlight(user: string): Promise<{ first: TestClient; sender: TestClient }> {
    const first = await member(cluster.nodes.node.port, user);
    const sender = await member(cluster.nodes.other.port, `${user}-sender`);
    await sleep(300);
    await sendTo(sender, user, 0, 3);
    assert.deepEqual((await nextMsgs(first, 3)).map((m) => m.data), [0, 1, 2], 'in flight to the open connection');
    return { first, sender };
  }

  test("gets its user's messages in flight before it, once Redis answers: a CONNECT refused with an error reply", async () => {
    const { first, sender } = await inFlight('reader');
    // Only CONNECT reads this key (the queue index's count of scheduled messages): of the wrong type, it fails.
    await cluster.store.hset('cr:qs:reader', 'x', '1');
    // The node's commands reach Redis 300 ms late (its command_timeout is 0.5 s); the other
    // node's routes, and its records to this node, do not: 3-4 are routed while the CONNECT runs.
    cluster.proxy.delayUpstreamMs = 300;
    const opening = member(cluster.nodes.node.port, 'reader');
    await sleep(100);
    await sendTo(sender, 'reader', 3, 5);
    const late = await opening;
    const openedAt = Date.now();
    cluster.proxy.delayUpstreamMs = 0;
    assert.equal(late.welcome.pending, 0, 'welcomed without a backlog');
    assert.ok(cluster.nodes.node.logs.some((l) => /WRONGTYPE/.test(JSON.stringify(l))), 'its CONNECT failed');
    await sendTo(sender, 'reader', 5, 7);
    await cluster.store.del('cr:qs:reader');
    assert.deepEqual((await nextMsgs(first, 4)).map((m) => m.data), [3, 4, 5, 6]);
    await assertCaughtUp(late, first, openedAt, [3, 4], [0, 1, 2], [5, 6]);
    for (const client of [first, late, sender]) client.close();
  });

  test("gets its user's messages in flight before it, once Redis answers: a CONNECT that timed out", async () => {
    const { first, sender } = await inFlight('reader2');
    // The node's commands reach Redis 800 ms late, past its command_timeout (0.5 s): the CONNECT times out, and runs.
    cluster.proxy.delayUpstreamMs = 800;
    const late = await member(cluster.nodes.node.port, 'reader2');
    const openedAt = Date.now();
    cluster.proxy.delayUpstreamMs = 0;
    assert.equal(late.welcome.pending, 0, 'welcomed without a backlog');
    await sendTo(sender, 'reader2', 3, 5);
    assert.deepEqual((await nextMsgs(first, 2)).map((m) => m.data), [3, 4]);
    await assertCaughtUp(late, first, openedAt, [], [0, 1, 2], [3, 4]);
    assert.ok(!cluster.nodes.node.logs.some((l) => /Redis unreachable/.test(JSON.stringify(l))), 'the node stayed up (no outage, no rescan)');
    for (const client of [first, late, sender]) client.close();
  });
});

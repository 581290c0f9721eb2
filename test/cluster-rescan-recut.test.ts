/**
 * A node found forgotten while the rescan after an outage still runs holds its connections for
 * the next rescan, and the first one's end does not release them: released, they got what was
 * routed to them after the node came back before what the next rescan found they had missed
 * (routed meanwhile to their user's connection on another node only). A review of 2026-12-07
 * reasoned it. Real node processes; the node under test reaches its private Redis through a TCP
 * proxy, which slows its round trips so that its rescan is still listing when it is forgotten.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sleep } from './helpers/broker.js';
import { member } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { nextMsgs, settle, unreadData, untilTrue } from './helpers/messaging.js';
import { announceSkip } from './helpers/redis.js';
import { watchCommands } from './helpers/script-work.js';

const skip = announceSkip('cluster-rescan-recut.test');
// Deadlines minutes away: no redelivery explains what arrives.
const LONG = { websocket: { delivery: { ack_timeout: 300, max_backoff: 300 } } };
// In flight before the outage: the rescan lists them in six scripts of 500, one round trip each.
const IN_FLIGHT = 3000;

describe('a node forgotten while its rescan lists', { skip, timeout: 90_000 }, () => {
  const cluster = clusterFixture({ nodes: { slow: { prefix: 'rc:', extra: LONG, throughProxy: true }, other: { prefix: 'rc:', extra: LONG } }, store: true });

  test('its connection gets what it missed before what came after', async () => {
    const held = await member(cluster.nodes.slow.port, 'reader');
    const [node] = await cluster.store.hkeys('rc:pu:reader'); // the slow node: the reader is only there yet
    const elsewhere = await member(cluster.nodes.other.port, 'reader');
    const sender = await member(cluster.nodes.other.port, 'sender');
    for (let i = 0; i < IN_FLIGHT; i++) sender.send({ op: 'send', to: 'reader', data: `p${i}`, ref: `p${i}` });
    for (let i = 0; i < IN_FLIGHT; i++) await sender.next((f) => f.ref === `p${i}`, 10_000);
    await nextMsgs(held, IN_FLIGHT, 10_000);
    await nextMsgs(elsewhere, IN_FLIGHT, 10_000);
    // Redis's MONITOR tells when the rescan's listing runs its first script (CONNECT: EVALSHA
    // sha 0 prefix node user ...); read on a socket of its own, as ioredis's monitor() can throw
    // from its socket handler ("Command queue state error", which failed a CI run).
    let listed!: () => void;
    const listing = new Promise<void>((resolve) => (listed = resolve));
    const unwatch = await watchCommands(cluster.redis.url, (args) => {
      if (args[0]?.toLowerCase() === 'evalsha' && args[4] === node && args[5] === 'reader' && args.length === 19) listed();
    });
    cluster.proxy.refuse = true;
    await sleep(1000);
    cluster.proxy.delayUpstreamMs = 500;
    cluster.proxy.refuse = false;
    // The rescan's listing ran its first script; its pages take a round trip each, seconds in all.
    await listing;
    unwatch();
    // Forgotten: routes leave it out, so these go to the reader's other connection only; the
    // listing under way ends at what was in flight when it began, so they are not in it.
    await cluster.store.zrem('rc:nodes', node!);
    for (let i = 0; i < 3; i++) sender.send({ op: 'send', to: 'reader', data: `f${i}`, ref: `f${i}` });
    for (let i = 0; i < 3; i++) assert.equal((await sender.next((f) => f.ref === `f${i}`, 10_000)).op, 'ack');
    // Its heartbeat found it forgotten and wrote it back: the connection is held again (the
    // rescan under way must not release it), and what is sent from now on is routed to the node.
    await untilTrue('the heartbeat', async () => (await cluster.store.zscore('rc:nodes', node!)) !== null);
    // Past the end of the first rescan, well before the second's hand-over.
    for (let i = 0; i < 60; i++) {
      sender.send({ op: 'send', to: 'reader', data: `n${i}`, ref: `n${i}` });
      await sleep(100);
    }
    const sent = ['f0', 'f1', 'f2', ...Array.from({ length: 60 }, (_, i) => `n${i}`)];
    await untilTrue('every message', () => unreadData(held).length >= sent.length, 30_000);
    await sleep(500);
    await settle(held);
    assert.deepEqual(unreadData(held), sent, 'each once, in the order sent');
    cluster.proxy.delayUpstreamMs = 0;
    sender.close();
    held.close();
    elsewhere.close();
  });
});

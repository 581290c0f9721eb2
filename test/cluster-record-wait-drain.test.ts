/**
 * A PUMP's hand-out held for another node's route record (record-waits.ts) when the pumping
 * node's drain begins (SIGTERM): the drain's ack barrier counted only what was handed out, and
 * the node closed its clients and exited with the hand-out still held (its timer unref'd), so
 * the PUMP's records never went to the user's connections on the other nodes: they got the
 * message at its ack deadline (3 runs of 3 before 2026-12-08's fix). Set up as
 * cluster-route-pump-order.test.ts (window 2, the routing node's commands held by a proxy), the
 * hold 1.5 s a command so that the record of 1 comes seconds after the PUMP, past the drain's
 * 1 s barrier: the node's stop waits for it (with the barrier alone, 2 came before 1).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sleep } from './helpers/broker.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { nextMsgs, unreadData } from './helpers/messaging.js';
import { announceSkip } from './helpers/redis.js';
import { portsOf, routePumpNodes, routeThenWait } from './helpers/route-pump.js';

const skip = announceSkip('cluster-record-wait-drain.test');

describe("a PUMP's hand-out held for a record as its node drains", { skip, timeout: 60_000 }, () => {
  const cluster = clusterFixture({ nodes: routePumpNodes('rd:') });

  test("the user's connection on another node gets what the draining node's PUMP claimed, in order", async () => {
    const { reader, watcher, sender, m0 } = await routeThenWait(portsOf(cluster.nodes), cluster.proxy, 1500);
    // The routes ran; the record of 1 is 1.5 s from Redis or more. The ack pumps 2, held behind it; the drain begins.
    reader.send({ op: 'ack', id: m0.id });
    await sleep(200);
    const exited = cluster.nodes.pumping.stop('SIGTERM');
    // Acknowledged where handed out: the drain's barrier waits for those acks.
    let stopped = false;
    const acking = (async () => {
      while (!stopped) {
        const msgs = await nextMsgs(reader, 1, 500).catch(() => null);
        if (msgs === null) await sleep(100); // closed: next() fails at once
        for (const m of msgs ?? []) reader.send({ op: 'ack', id: m.id });
      }
    })();
    for (let i = 0; i < 100 && unreadData(watcher).length < 2; i++) await sleep(100);
    stopped = true;
    await acking;
    assert.deepEqual(unreadData(watcher), [1, 2], 'the watcher got 1, then 2, within 10 s');
    assert.equal(await exited, 0);
    cluster.proxy.delayUpstreamMs = 0;
    watcher.close();
    sender.close();
  });
});

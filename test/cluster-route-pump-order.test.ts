/**
 * A message another node's route claimed, its record still on its way, and a newer one the
 * user's window left waiting, which the user's ack then has its own node pump: the PUMP's reply
 * reaches that node over its command connection, the route's record over its subscriber
 * connection once the routing node has its reply and PUBLISHes it. README's Not yet reasoned it
 * ("a route claims and holds no one"); here the newer one came first in 7 runs of 7. Now the
 * route marks itself (P wl:USER) and the pumping node hands out behind its record
 * (src/cluster/record-waits.ts). The routing node reaches Redis through a TCP proxy that holds
 * its commands 300 ms, so its record of the older message leaves Redis that much after its
 * routes ran.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sleep } from './helpers/broker.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { settle, unreadData } from './helpers/messaging.js';
import { announceSkip } from './helpers/redis.js';
import { portsOf, routePumpNodes, routeThenWait } from './helpers/route-pump.js';

const skip = announceSkip('cluster-route-pump-order.test');

describe("another node's route, and the user's node's PUMP right after it", { skip, timeout: 60_000 }, () => {
  const cluster = clusterFixture({ nodes: routePumpNodes('rp:') });

  test("the user's connections get the routed message before the newer one the PUMP claimed, on the pumping node and on a third", async () => {
    const { reader, watcher, sender, m0 } = await routeThenWait(portsOf(cluster.nodes), cluster.proxy, 300);
    // Both routes ran (their replies came with the acks); the record of 1 is 300 ms from
    // Redis. The ack of 0 makes room: the reader's node pumps 2 and hands it out from the reply.
    reader.send({ op: 'ack', id: m0.id });
    await sleep(1500);
    await settle(reader);
    await settle(watcher);
    assert.deepEqual({ reader: unreadData(reader), watcher: unreadData(watcher) }, { reader: [1, 2], watcher: [1, 2] }, 'in the order sent, each once, on both nodes');
    cluster.proxy.delayUpstreamMs = 0;
    reader.close();
    watcher.close();
    sender.close();
  });
});

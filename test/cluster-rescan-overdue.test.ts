/**
 * A message this node handed to a connection open through an outage, whose ack deadline passed
 * during the outage (no sweep ran: Redis out of reach), is redelivered once, by the sweep that
 * finds it overdue: the rescan does not hand it too (a review of 2026-12-07 saw two copies
 * within milliseconds). Real node process; it reaches its private Redis through a TCP proxy.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sleep } from './helpers/broker.js';
import { member } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { nextMsgs, unreadData, untilTrue } from './helpers/messaging.js';
import { announceSkip } from './helpers/redis.js';

const skip = announceSkip('cluster-rescan-overdue.test');

describe('an outage past a delivery ack deadline', { skip, timeout: 60_000 }, () => {
  const cluster = clusterFixture({ nodes: { node: { prefix: 'rd:', extra: { websocket: { delivery: { ack_timeout: 1, max_backoff: 20, backoff_multiplier: 8 } } }, throughProxy: true } } });

  test('the connection open throughout gets the overdue message once, not twice', async () => {
    const reader = await member(cluster.nodes.node.port, 'reader');
    const sender = await member(cluster.nodes.node.port, 'sender');
    sender.send({ op: 'send', to: 'reader', data: 'M', ref: 'r' });
    assert.equal((await sender.next((f) => f.ref === 'r', 10_000)).op, 'ack');
    const [first] = await nextMsgs(reader, 1);
    assert.equal(first!.data, 'M');
    cluster.proxy.refuse = true;
    await sleep(2500); // past the ack deadline (1 s); no sweep reaches Redis
    cluster.proxy.refuse = false;
    await untilTrue('a copy after the outage', () => unreadData(reader).length > 0, 15_000);
    await sleep(500); // less than the next redelivery's backoff (8 s)
    assert.deepEqual(unreadData(reader), ['M']);
    sender.close();
    reader.close();
  });
});

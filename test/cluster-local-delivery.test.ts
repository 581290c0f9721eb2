/**
 * A cluster node's own end of stored-message deliveries (src/cluster/local-delivery.ts): what it
 * hands to its connections counts as awaiting an ack (what a drain waits for) until the ack or
 * the message's ack deadline, and that deadline is the one Redis's scripts set: a redelivery's,
 * after backoff, is further off than one ack_timeout.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LocalDelivery } from '../src/cluster/local-delivery.js';
import { LocalPresence } from '../src/cluster/presence.js';
import { configSchema } from '../src/config/schema.js';
import { RecordingLink, sleep } from './helpers/broker.js';

function nodeWithBob(): { delivery: LocalDelivery; link: RecordingLink } {
  const config = configSchema.parse({ websocket: { delivery: { ack_timeout: 0.05 } } });
  const presence = new LocalPresence();
  presence.online({ sid: 's1', user: 'bob', shard: 0, weight: 1, groups: new Set(), watching: null });
  const link = new RecordingLink();
  return { delivery: new LocalDelivery(config, presence, link), link };
}

describe('cluster: deliveries awaiting their ack on this node', () => {
  test('a delivery counts until its own deadline, which a redelivery has further off than ack_timeout', async () => {
    const { delivery, link } = nodeWithBob();
    delivery.toUser('bob', [['first', '{"op":"msg"}', 0]]);
    delivery.toSid('s1', [['again', '{"op":"msg"}', Date.now() + 60_000]]);
    assert.equal(link.calls.length, 2);
    assert.equal(delivery.inflight(), 2);
    await sleep(120); // past ack_timeout (50 ms)
    assert.equal(delivery.inflight(), 1, 'the redelivery still awaits its ack');
    delivery.acked('again');
    assert.equal(delivery.inflight(), 0);
  });

  test('nothing counts for a user with no connection here', () => {
    const { delivery, link } = nodeWithBob();
    delivery.toUser('alice', [['m', '{"op":"msg"}', Date.now() + 60_000]]);
    assert.deepEqual([link.calls.length, delivery.inflight()], [0, 0]);
  });
});

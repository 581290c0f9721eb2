/**
 * A cluster node's own end of stored-message deliveries (src/cluster/local-delivery.ts): what it
 * hands to its connections counts as awaiting an ack (what a drain waits for) until the ack or
 * the message's ack deadline, and that deadline is the one Redis's scripts set: a redelivery's,
 * after backoff, is further off than one ack_timeout. Several messages for one place go as
 * `batch` frames, except a CRITICAL one, which travels alone, as on one process (PROTOCOL.md).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LocalDelivery, outgoing } from '../src/cluster/local-delivery.js';
import { LocalPresence } from '../src/cluster/presence.js';
import { configSchema } from '../src/config/schema.js';
import { encodeStoredMsg, storedMsgPriority } from '../src/protocol/json-codec.js';
import { RecordingLink, sleep } from './helpers/broker.js';

const msg = (id: string, pri: number): string => encodeStoredMsg(id, 'alice', null, '"hi"', pri, 1_800_000_000_000);

function nodeWithBob(ackTimeout = 0.05): { delivery: LocalDelivery; link: RecordingLink; presence: LocalPresence } {
  const config = configSchema.parse({ websocket: { delivery: { ack_timeout: ackTimeout } } });
  const presence = new LocalPresence();
  presence.online({ sid: 's1', user: 'bob', shard: 0, weight: 1, groups: new Set(), watching: null });
  const link = new RecordingLink();
  return { delivery: new LocalDelivery(config, presence, link), link, presence };
}

describe('cluster: deliveries awaiting their ack on this node', () => {
  test('a delivery counts until its own deadline, which a redelivery has further off than ack_timeout', async () => {
    const { delivery, link } = nodeWithBob();
    delivery.toUser('bob', [outgoing('first', msg('first', 1), 0, 1)]);
    delivery.toSid('s1', [outgoing('again', msg('again', 1), Date.now() + 60_000, 1)]);
    assert.equal(link.calls.length, 2);
    assert.equal(delivery.inflight(), 2);
    await sleep(120); // past ack_timeout (50 ms)
    assert.equal(delivery.inflight(), 1, 'the redelivery still awaits its ack');
    delivery.acked('again');
    assert.equal(delivery.inflight(), 0);
  });

  test('nothing counts for a user with no connection here', () => {
    const { delivery, link } = nodeWithBob();
    delivery.toUser('alice', [outgoing('m', msg('m', 1), Date.now() + 60_000, 1)]);
    assert.deepEqual([link.calls.length, delivery.inflight()], [0, 0]);
  });

  test('a backlog goes as batch frames in its order, each CRITICAL message alone', () => {
    const { delivery, link } = nodeWithBob();
    const backlog = [['c1', 3], ['c2', 3], ['h1', 2], ['n1', 1], ['n2', 1]] as const;
    delivery.toSid('s1', backlog.map(([id, pri]) => outgoing(id, msg(id, pri), 0, pri)));
    const frames = link.calls.map((call) => JSON.parse((call as { frame: string }).frame) as { op: string; id?: string; msgs?: { id: string }[] });
    assert.deepEqual(
      frames.map((f) => (f.op === 'batch' ? f.msgs!.map((m) => m.id) : f.id)),
      ['c1', 'c2', ['h1', 'n1', 'n2']],
    );
  });

  test('a route that crossed a CONNECT reaches neither the connection its backlog gave the message to, nor any once it was acknowledged here', () => {
    const { delivery, link } = nodeWithBob(60);
    delivery.backlogInFlight('s1', [outgoing('x', msg('x', 1), 0, 1)]);
    delivery.toUser('bob', [outgoing('x', msg('x', 1), 0, 1)]);
    assert.equal(link.calls.length, 0, 'not again to the connection that had it');
    delivery.acked('x');
    // The routing node's record, published before the CONNECT, comes after the ack.
    delivery.toUser('bob', [outgoing('x', msg('x', 1), 0, 1), outgoing('y', msg('y', 1), 0, 1)]);
    assert.deepEqual(
      link.calls.map((call) => JSON.parse((call as { frame: string }).frame).id),
      ['y'],
    );
  });

  test("a rescan's hold of a welcomed connection keeps its user's deliveries from it until released, and its other connections get them at once", () => {
    const { delivery, link, presence } = nodeWithBob();
    presence.online({ sid: 's2', user: 'bob', shard: 0, weight: 1, groups: new Set(), watching: null });
    delivery.hold('s2', true);
    delivery.toUser('bob', [outgoing('new', msg('new', 1), 0, 1)]);
    // Not to the user (its shard would hand it to s2, welcomed): to s1 alone.
    assert.deepEqual(link.calls.map((call) => [(call as { op: string }).op, (call as { sid?: string }).sid]), [['deliverToSid', 's1']]);
    assert.deepEqual(delivery.release('s2').map((m) => m.id), ['new']);
    delivery.toUser('bob', [outgoing('later', msg('later', 1), 0, 1)]);
    assert.equal((link.calls.at(-1) as { op: string }).op, 'deliverToUser', 'released: to the user again');
  });

  test("a stored message's priority is read back from its frame, whatever its data holds", () => {
    assert.equal(storedMsgPriority(encodeStoredMsg('m', 'a', null, '{"pri":0,"x":",\\"pri\\":1"}', 3, 1)), 3);
    assert.equal(storedMsgPriority(encodeStoredMsg('m', 'a', 'g', '{"x":1,"pri":2}', 0, 1)), 0);
    assert.equal(storedMsgPriority('{"op":"msg"}'), -1);
  });
});

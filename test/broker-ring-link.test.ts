import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RingShardLink } from '../src/broker/ring-link.js';
import { QueuedRingWriter } from '../src/link/queued-writer.js';
import { LinkReader } from '../src/link/reader.js';
import { encodeRecord, FRAME_RECORD_OVERHEAD, ToBroker, ToShard } from '../src/link/records.js';
import { createDoorbells, DoorbellRinger } from '../src/rings/doorbell.js';
import { createRingBuffer } from '../src/rings/ring.js';

/** The ring ShardLink in this thread, with the shards' ends of its rings played by the test. */
describe('broker: the ShardLink over rings', () => {
  const shards = 2;
  const doorbells = createDoorbells(shards + 1);
  const fromShard = [createRingBuffer(64 * 1024), createRingBuffer(64 * 1024)];
  const toShard = [createRingBuffer(64 * 1024), createRingBuffer(64 * 1024)];
  const link = new RingShardLink({ shards, doorbells, fromShard, toShard });
  const inbound: Array<[number, number, unknown[]]> = [];
  let wake: (() => void) | null = null;
  const atShard = toShard.map((buffer) => {
    const got: Array<[number, unknown[]]> = [];
    return { got, reader: new LinkReader(buffer, (kind, fields) => got.push([kind, fields]), false) };
  });
  const shardWriters = fromShard.map((buffer) => new QueuedRingWriter(buffer, new DoorbellRinger(doorbells), shards));

  before(() => {
    link.listen((shard, kind, fields) => {
      inbound.push([shard, kind, fields]);
      wake?.();
    });
  });
  after(() => {
    link.stop();
    for (const writer of shardWriters) writer.stop();
  });

  test('each call reaches its shard as the record src/link/records.ts defines', () => {
    link.deliverToUser(0, 'ann', '{"op":"msg"}');
    link.deliverToSid(1, 's1', '{"op":"batch"}');
    link.senderAck(1, 's1', null, 'id-1');
    link.error(0, 's0', 'E_UNKNOWN_ID', 'no such id', 'r');
    link.welcome(0, 's0', 3);
    link.adminReply(1, 7, 404, '{}');
    link.groupPub('room', '{"op":"msg","group":"room"}');
    for (const { reader } of atShard) reader.drain(100);
    assert.deepEqual(atShard[0]!.got, [
      [ToShard.DELIVER_USER, ['ann', '{"op":"msg"}']],
      [ToShard.ERROR, ['s0', 'E_UNKNOWN_ID', 'no such id', 'r']],
      [ToShard.WELCOME, ['s0', 3]],
      [ToShard.GROUP_PUB, ['room', '{"op":"msg","group":"room"}']],
    ]);
    assert.deepEqual(atShard[1]!.got, [
      [ToShard.DELIVER_SID, ['s1', '{"op":"batch"}']],
      [ToShard.SENDER_ACK, ['s1', null, 'id-1']],
      [ToShard.ADMIN_REPLY, [7, 404, '{}']],
      [ToShard.GROUP_PUB, ['room', '{"op":"msg","group":"room"}']],
    ]);
  });

  test('an admin answer too large for the ring is replaced by a coded 500, so the request is still answered; frames up to maxFrameBytes fit', () => {
    assert.equal(link.maxFrameBytes, 32 * 1024 - 4 - FRAME_RECORD_OVERHEAD);
    const before = link.stats.link_too_large;
    link.adminReply(0, 9, 200, 'x'.repeat(40_000));
    link.deliverToSid(0, 's0', 'y'.repeat(link.maxFrameBytes));
    atShard[0]!.got.length = 0;
    atShard[0]!.reader.drain(100);
    const [reply, delivery] = atShard[0]!.got;
    assert.deepEqual(reply, [ToShard.ADMIN_REPLY, [9, 500, JSON.stringify({ code: 'internal_error', message: 'the answer (40000 characters) is too large for the shard link' })]]);
    assert.equal((delivery![1][1] as string).length, link.maxFrameBytes);
    assert.equal(link.stats.link_too_large, before + 1);
  });

  test("a shard's records reach the broker when the shard rings its doorbell", async () => {
    const arrived = new Promise<void>((resolve) => (wake = resolve));
    shardWriters[1]!.write(encodeRecord(ToBroker.ACK, ['s1', 'bob', 'id-9']));
    await arrived;
    assert.deepEqual(inbound.at(-1), [1, ToBroker.ACK, ['s1', 'bob', 'id-9']]);
  });

  test('shardDown hands over, at once, what the dead shard wrote last', () => {
    const before = inbound.length;
    shardWriters[0]!.write(encodeRecord(ToBroker.PRESENCE, ['s0', 'ann', 0]));
    link.shardDown(0);
    assert.deepEqual(inbound.slice(before), [[0, ToBroker.PRESENCE, ['s0', 'ann', 0]]]);
  });
});

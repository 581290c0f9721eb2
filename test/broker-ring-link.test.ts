import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Broker } from '../src/broker/broker.js';
import { RingShardLink } from '../src/broker/ring-link.js';
import { loadConfig } from '../src/config/load.js';
import { MessageStore } from '../src/store/store.js';
import { createLogger } from '../src/util/logger.js';
import { msgsIn } from './helpers/broker.js';
import { tempDataDir } from './helpers/server.js';
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
    link.error(0, 's0', 'E_UNKNOWN_ID', 'no such id', null, false, 'm-1');
    link.welcome(0, 's0', 3);
    link.adminReply(1, 7, 404, '{}');
    link.groupPub('room', '{"op":"msg","group":"room"}');
    for (const { reader } of atShard) reader.drain(100);
    assert.deepEqual(atShard[0]!.got, [
      [ToShard.DELIVER_USER, ['ann', '{"op":"msg"}']],
      [ToShard.ERROR, ['s0', 'E_UNKNOWN_ID', 'no such id', 'r']],
      [ToShard.ERROR, ['s0', 'E_UNKNOWN_ID', 'no such id', null, 0, 'm-1']],
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

/** Records read from `buffer` since the last call, decoded. */
function shardEnd(buffer: SharedArrayBuffer): () => Array<[number, unknown[]]> {
  let got: Array<[number, unknown[]]> = [];
  const reader = new LinkReader(buffer, (kind, fields) => got.push([kind, fields]), false);
  return () => {
    reader.drain(Number.MAX_SAFE_INTEGER);
    const out = got;
    got = [];
    return out;
  };
}

describe('broker: what waits for a shard is bounded', () => {
  const doorbells = createDoorbells(3);
  const toShard = [createRingBuffer(1024), createRingBuffer(1024)];
  const down = new Set<number>();
  const link = new RingShardLink({ shards: 2, doorbells, fromShard: [createRingBuffer(1024), createRingBuffer(1024)], toShard, accepts: (shard) => !down.has(shard), maxBacklogBytes: 2000 });
  const read = toShard.map(shardEnd);
  after(() => link.stop());

  test('records for a shard that is not up are discarded, not queued for a connection that is gone', () => {
    down.add(1);
    link.deliverToSid(1, 's1', 'x'.repeat(400));
    link.welcome(1, 's1', 0);
    link.groupPub('room', '{"op":"msg"}');
    assert.equal(link.stats.link_discarded, 3);
    down.delete(1);
    assert.deepEqual(read[1]!(), [], 'nothing waited for it');
    assert.deepEqual(read[0]!(), [[ToShard.GROUP_PUB, ['room', '{"op":"msg"}']]]);
  });

  test('over its bound the overflow takes no more deliveries (their ack timers resend them) nor group messages; acks and welcomes get twice the bound', async () => {
    const frame = 'y'.repeat(480); // records of about 490 bytes: two fill the ring
    for (let i = 0; i < 10; i++) link.deliverToSid(0, `d${i}`, frame);
    // 2 in the ring, 4 (about 1,960 bytes) waiting, then the bound.
    assert.equal(link.stats.link_deferred, 4);
    link.groupPub('room', frame);
    assert.equal(link.stats.link_dropped, 1);
    for (let i = 0; i < 4; i++) link.senderAck(0, `a${i}`, `r${i}`, `id${i}`);
    assert.equal(link.stats.link_dropped, 1, 'acks still wait, within twice the bound');
    const got: Array<[number, unknown[]]> = [];
    while (got.length < 10) {
      got.push(...read[0]!());
      await new Promise((resolve) => setTimeout(resolve, 5)); // the writer flushes as the ring drains
    }
    assert.deepEqual(got.map(([kind, fields]) => `${kind}:${fields[0]}`), [...['d0', 'd1', 'd2', 'd3', 'd4', 'd5'].map((sid) => `${ToShard.DELIVER_SID}:${sid}`), ...['a0', 'a1', 'a2', 'a3'].map((sid) => `${ToShard.SENDER_ACK}:${sid}`)]);
  });

  test("past twice the bound errors that answer a request are dropped, but a connection's welcome, a sender's ack and an error that closes it still go (a dropped welcome left its connection waiting for good, a dropped ack made its sender send again)", async () => {
    const message = 'z'.repeat(460);
    const before = link.stats.link_dropped;
    let sent = 0;
    for (; sent < 20; sent++) link.error(1, 'flooder', 'E_UNKNOWN_ID', message, null, false, `x${sent}`);
    // Then small ones until one is dropped: the overflow is within a few bytes of its limit.
    for (const dropped = link.stats.link_dropped; link.stats.link_dropped === dropped; sent++) link.error(1, 'f', 'E_UNKNOWN_ID', '', null, false, `y${sent}`);
    const dropped = link.stats.link_dropped - before;
    assert.ok(dropped > 10, 'a flood of answers is cut');
    const newcomer = 'n'.repeat(100); // a record larger than the small errors the overflow refused
    link.welcome(1, newcomer, 0);
    link.senderAck(1, 'sender', 'r1', 'stored-id');
    link.error(1, 'capped', 'E_RATE_LIMITED', 'too many connections for this user', null, true);
    assert.equal(link.stats.link_dropped - before, dropped, 'none was dropped');
    const got: Array<[number, unknown[]]> = [];
    for (let i = 0; i < 200 && got.length < sent + 3 - dropped; i++) {
      got.push(...read[1]!());
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.deepEqual(got.slice(-3).map(([kind, fields]) => [kind, fields[0]]), [[ToShard.WELCOME, newcomer], [ToShard.SENDER_ACK, 'sender'], [ToShard.ERROR, 'capped']]);
  });
});

describe('broker: deliveries a full ring could not take', () => {
  test('stay stored and arrive once the shard reads again, resent by their ack timers', async () => {
    const dir = tempDataDir();
    const { config } = loadConfig({ env: {}, overrides: { websocket: { delivery: { ack_timeout: 0.05, max_attempts: 1000 }, performance: { batch_size: 1 } }, store: { data_dir: dir } } });
    const store = await MessageStore.open(dir, config.store.sync);
    const toShard = createRingBuffer(4096);
    const link = new RingShardLink({ shards: 1, doorbells: createDoorbells(2), fromShard: [createRingBuffer(4096)], toShard: [toShard], maxBacklogBytes: 2000 });
    const broker = new Broker({ config: config as Broker['options']['config'], store, instance: 'test', log: createLogger('silent'), link, publishProcessorTypes: () => {} });
    broker.start();
    try {
      broker.onRecord(0, ToBroker.PRESENCE, ['s0', 'ann', 1]);
      const ids = new Set<string>();
      for (let i = 0; i < 20; i++) ids.add(await broker.send('ann', { i, text: 'z'.repeat(300) }));
      await new Promise((resolve) => setImmediate(resolve)); // the outbox flushes
      assert.ok(link.stats.link_deferred > 0, 'the shard was not reading: some deliveries were not written');
      const read = shardEnd(toShard);
      const acked = new Set<string>();
      const deadline = Date.now() + 20_000;
      while (acked.size < ids.size && Date.now() < deadline) {
        for (const [kind, fields] of read()) {
          if (kind !== ToShard.DELIVER_USER) continue;
          const id = msgsIn(fields[1] as string)[0]!.id as string;
          acked.add(id);
          broker.onRecord(0, ToBroker.ACK, ['s0', 'ann', id]);
        }
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.deepEqual([...acked].sort(), [...ids].sort());
      assert.equal(broker.stats.dead_lettered, 0);
    } finally {
      await broker.stop();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

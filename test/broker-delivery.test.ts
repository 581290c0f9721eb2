import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { epochMs } from '../src/metrics/clock.js';
import { OcsError } from '../src/protocol/errors.js';
import { msgsIn, sleep, startBroker, type TestBroker } from './helpers/broker.js';
import { until } from './helpers/messaging.js';

describe('broker: direct messages', () => {
  let t: TestBroker;
  before(async () => {
    t = await startBroker({ delivery: { ack_timeout: 0.05, max_attempts: 100 }, performance: { batch_size: 2 } });
  });
  after(() => t.close());

  test('a message for an offline user waits; on connecting it gets welcome {pending}, then CRITICAL alone, then batches priority high to low in acceptance order', async () => {
    const { link } = t;
    const sent = [
      { text: 'a', pri: 0 },
      { text: 'b', pri: 1 },
      { text: 'c', pri: 2 },
      { text: 'd', pri: 1 },
      { text: 'e', pri: 3 },
    ];
    for (const { text, pri } of sent) {
      link.send(0, 'alice-1', 'alice', 'bob', { text }, { ref: text, pri });
      await link.next('senderAck', (c) => c.ref === text);
    }
    assert.equal(link.all('deliverToUser').length + link.all('deliverToSid').length, 0, 'nothing is delivered while bob is offline');

    link.online(1, 'bob-1', 'bob');
    const welcome = await link.next('welcome', (c) => c.sid === 'bob-1');
    assert.deepEqual([welcome.shard, welcome.pending], [1, 5]);
    await link.next('deliverToSid', (c) => c.sid === 'bob-1' && msgsIn(c.frame).some((m) => (m.data as { text: string }).text === 'a'));
    const frames = link.all('deliverToSid', (c) => c.sid === 'bob-1');
    assert.ok(frames.every((c) => c.shard === 1));
    const texts = frames.map((c) => msgsIn(c.frame).map((m) => (m.data as { text: string }).text));
    assert.deepEqual(texts, [['e'], ['c', 'b'], ['d', 'a']]);
    const [e] = msgsIn(frames[0]!.frame);
    assert.deepEqual({ ...e, id: '', ts: 0 }, { op: 'msg', id: '', from: 'alice', data: { text: 'e' }, pri: 3, ts: 0, ackReq: true });
    assert.ok(link.calls.indexOf(welcome) < link.calls.indexOf(frames[0]!), 'welcome comes first');
    for (const c of frames) for (const m of msgsIn(c.frame)) link.ack(1, 'bob-1', 'bob', m.id as string);
    link.offline(1, 'bob-1', 'bob');
  });

  test('an ack settles the message: it leaves the store and is not delivered again', async () => {
    const { link, broker, store } = t;
    link.online(0, 'cat-1', 'cat');
    // Acknowledged as soon as it arrives (its 50 ms deadline starts at delivery, which does not wait for the commit).
    const sending = broker.send('cat', 'once', { pri: 3 });
    const delivered = await link.next('deliverToUser', (c) => c.user === 'cat');
    const id = msgsIn(delivered.frame)[0]!.id as string;
    const acked = broker.stats.acked;
    link.ack(0, 'cat-1', 'cat', id);
    assert.equal(broker.stats.acked, acked + 1);
    assert.equal(await sending, id);
    await sleep(200); // four ack timeouts: an unsettled message would have come again
    assert.equal(link.all('deliverToUser', (c) => c.user === 'cat').length, 1);
    await store.flushed();
    assert.ok(![...store.loadQueue()].some((m) => m.id === id), 'removed from the store');
    link.offline(0, 'cat-1', 'cat');
  });

  test("a user's connections get one DELIVER_USER per shard they are on", async () => {
    const { link, broker } = t;
    link.online(0, 'dan-1', 'dan');
    link.online(0, 'dan-2', 'dan');
    link.online(1, 'dan-3', 'dan');
    // CRITICAL leaves at once: what went out by the time send() returns is the first delivery (later ones would be redeliveries).
    const sending = broker.send('dan', 'everywhere', { pri: 3 });
    assert.deepEqual(link.all('deliverToUser', (c) => c.user === 'dan').map((c) => c.shard).sort(), [0, 1]);
    const id = await sending;
    link.ack(1, 'dan-3', 'dan', id);
    for (const [shard, sid] of [[0, 'dan-1'], [0, 'dan-2'], [1, 'dan-3']] as const) link.offline(shard, sid, 'dan');
  });

  test("with more than 32 shards a user's connections still get exactly one DELIVER_USER per shard", async () => {
    const { link, broker } = t;
    const shards = Array.from({ length: 40 }, (_, shard) => shard);
    // Two connections on some shards, and shards that share their low five bits (0 and 32, 1 and 33).
    const sids: Array<readonly [number, string]> = shards.map((shard) => [shard, `ned-${shard}`] as const);
    sids.push([0, 'ned-0b'], [33, 'ned-33b'], [39, 'ned-39b']);
    for (const [shard, sid] of sids) link.online(shard, sid, 'ned');
    const sending = broker.send('ned', 'to every shard', { pri: 3 });
    const deliveries = link.all('deliverToUser', (c) => c.user === 'ned'); // the first delivery (CRITICAL: at once)
    const id = await sending;
    assert.deepEqual(deliveries.map((c) => c.shard).sort((a, b) => a - b), shards);
    assert.ok(deliveries.every((c) => msgsIn(c.frame)[0]!.id === id));
    link.ack(5, 'ned-5', 'ned', id);
    for (const [shard, sid] of sids) link.offline(shard, sid, 'ned');
  });

  test("an ack of an unknown id, of someone else's message, or a second ack gets E_UNKNOWN_ID; the message still waits for its recipient", async () => {
    const { link, broker } = t;
    link.online(0, 'eve-1', 'eve');
    link.online(1, 'fay-1', 'fay');
    const id = await broker.send('eve', 'for eve', { pri: 3 });
    await link.next('deliverToUser', (c) => c.user === 'eve');
    link.ack(1, 'fay-1', 'fay', id);
    link.ack(1, 'fay-1', 'fay', 'test-nosuchid');
    const refused = link.all('error', (c) => c.sid === 'fay-1');
    assert.deepEqual(refused.map((c) => [c.shard, c.code, c.ref, c.id]), [[1, 'E_UNKNOWN_ID', null, id], [1, 'E_UNKNOWN_ID', null, 'test-nosuchid']]);
    assert.match(refused[1]!.message, /no message test-nosuchid awaits your ack/);
    link.ack(0, 'eve-1', 'eve', id);
    assert.equal(link.all('error', (c) => c.sid === 'eve-1').length, 0, "fay's attempt left eve's message in place");
    link.ack(0, 'eve-1', 'eve', id);
    assert.equal(link.all('error', (c) => c.sid === 'eve-1' && c.code === 'E_UNKNOWN_ID').length, 1, 'the second ack is refused');
    link.offline(0, 'eve-1', 'eve');
    link.offline(1, 'fay-1', 'fay');
  });

  test('only a delivered message can be acknowledged: an ack of one still scheduled, or waiting for its offline recipient, gets E_UNKNOWN_ID and changes nothing', async () => {
    const { link, broker } = t;
    const scheduled = await broker.send('ken', 'later', { at: Date.now() + 60_000, pri: 3 });
    const waiting = await broker.send('lea', 'when lea connects', { pri: 3 });
    link.online(0, 'ken-1', 'ken');
    link.ack(0, 'ken-1', 'ken', scheduled);
    link.ack(0, 'ken-2', 'lea', waiting); // lea's own id, sent before anything was delivered to her
    const refused = link.all('error', (c) => c.sid === 'ken-1' || c.sid === 'ken-2');
    assert.deepEqual(refused.map((c) => c.code), ['E_UNKNOWN_ID', 'E_UNKNOWN_ID']);
    link.online(1, 'lea-1', 'lea');
    const delivered = await link.next('deliverToSid', (c) => c.sid === 'lea-1');
    assert.equal(msgsIn(delivered.frame)[0]!.id, waiting, 'still delivered');
    link.ack(1, 'lea-1', 'lea', waiting);
    assert.equal(link.all('error', (c) => c.sid === 'lea-1').length, 0, 'and then acknowledged');
    link.offline(0, 'ken-1', 'ken');
    link.offline(1, 'lea-1', 'lea');
  });

  test('the embedding API checks its arguments: TypeError for a bad user, pri, at or from', async () => {
    const { broker } = t;
    await assert.rejects(broker.send('no body', 'x'), TypeError);
    await assert.rejects(broker.send('ok', 'x', { pri: 7 }), TypeError);
    await assert.rejects(broker.send('ok', 'x', { at: -5 }), TypeError);
    await assert.rejects(broker.send('ok', 'x', { from: 'a"b' }), TypeError);
    assert.throws(() => broker.publish('room', 'x', { pri: 4 }), TypeError);
    assert.throws(() => broker.publish('room', 'x', { from: '' }), TypeError);
    assert.throws(() => broker.publish('bad group', 'x'), TypeError);
    assert.equal(t.link.all('groupPub').length, 0);
  });

  test('the embedding API refuses data nested deeper than a frame\'s data may be (63 levels) with E_BAD_FRAME, as a client is refused', async () => {
    const { broker } = t;
    const nested = (levels: number): unknown => JSON.parse('['.repeat(levels) + ']'.repeat(levels));
    const tooDeep = (err: unknown): boolean => err instanceof OcsError && err.code === 'E_BAD_FRAME' && /nested deeper than 63 levels/.test(err.message);
    // 20 000 levels: deeper than JSON.stringify could encode, which threw a RangeError before.
    for (const levels of [64, 20_000]) {
      await assert.rejects(broker.send('deep-1', nested(levels)), tooDeep, `send, ${levels} levels`);
      assert.throws(() => broker.publish('room', nested(levels)), tooDeep, `publish, ${levels} levels`);
    }
    assert.match(await broker.send('deep-1', nested(63)), /./, '63 levels are stored');
    assert.equal(t.link.all('groupPub').length, 0);
  });

  test('a send with a future `at` is acknowledged once stored and delivered no earlier than `at`', async () => {
    const { link } = t;
    link.online(0, 'gus-1', 'gus');
    const at = Date.now() + 150;
    link.send(0, 'alice-1', 'alice', 'gus', 'later', { ref: 'later', at, pri: 3 });
    const ack = await link.next('senderAck', (c) => c.ref === 'later');
    assert.equal(link.all('deliverToUser', (c) => c.user === 'gus').length, 0);
    const delivered = await link.next('deliverToUser', (c) => c.user === 'gus');
    assert.ok(delivered.time >= at, `delivered ${at - delivered.time} ms early`);
    assert.equal(msgsIn(delivered.frame)[0]!.id, ack.id);
    link.ack(0, 'gus-1', 'gus', ack.id);
    link.offline(0, 'gus-1', 'gus');
  });

  test("a shard that dies takes its connections along: the user's messages wait for the next connection", async () => {
    const { link, broker } = t;
    link.online(1, 'hal-1', 'hal');
    broker.shardDown(1);
    assert.equal(link.all('shardDown', (c) => c.shard === 1).length, 1);
    const id = await broker.send('hal', 'after the crash', { pri: 3 });
    assert.equal(link.all('deliverToUser', (c) => c.user === 'hal').length, 0);
    link.online(0, 'hal-2', 'hal');
    assert.equal((await link.next('welcome', (c) => c.sid === 'hal-2')).pending, 1);
    const delivered = await link.next('deliverToSid', (c) => c.sid === 'hal-2');
    assert.equal(msgsIn(delivered.frame)[0]!.id, id);
    link.ack(0, 'hal-2', 'hal', id);
    link.offline(0, 'hal-2', 'hal');
  });
});

describe('broker: frames cut to what a ring carries', () => {
  let t: TestBroker;
  before(async () => {
    // 64 KiB rings: a record of at most 32 KiB, so three 10 KB messages make a batch too large for one.
    t = await startBroker({ delivery: { ack_timeout: 30 }, performance: { ring_bytes: 65536, batch_size: 50 }, server: { max_payload: 16384 } });
  });
  after(() => t.close());

  test('a backlog of large messages goes out in batches that each fit a ring record, all of it, in order', async () => {
    const { link } = t;
    const text = 'x'.repeat(10_000);
    for (let i = 0; i < 10; i++) {
      link.send(0, 'sam-1', 'sam', 'tia', { i, text }, { ref: `big${i}` });
      assert.equal((await link.answerTo(`big${i}`)).op, 'senderAck');
    }
    link.online(1, 'tia-1', 'tia');
    assert.equal((await link.next('welcome', (c) => c.sid === 'tia-1')).pending, 10);
    await link.next('deliverToSid', (c) => c.sid === 'tia-1' && msgsIn(c.frame).some((m) => (m.data as { i: number }).i === 9));
    const frames = link.all('deliverToSid', (c) => c.sid === 'tia-1');
    assert.ok(frames.length >= 4, `${frames.length} frames for 10 messages of 10 KB`);
    for (const c of frames) assert.ok(Buffer.byteLength(c.frame) <= link.maxFrameBytes, `a frame of ${Buffer.byteLength(c.frame)} bytes`);
    const order = frames.flatMap((c) => msgsIn(c.frame).map((m) => (m.data as { i: number }).i));
    assert.deepEqual(order, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // A backlog waited for its recipient: not the server's send latency.
    assert.deepEqual(frames.map((c) => c.live), frames.map(() => 0));
    for (const c of frames) for (const m of msgsIn(c.frame)) link.ack(1, 'tia-1', 'tia', m.id as string);
  });

  test('messages for an online user, in frames cut to fit a ring record, each frame carrying the send-latency stamp (count, earliest arrival) of its own messages', async () => {
    const { link } = t;
    link.online(1, 'uma-1', 'uma');
    await link.next('welcome', (c) => c.sid === 'uma-1');
    const text = 'x'.repeat(10_000);
    const sentAt = epochMs();
    for (let i = 0; i < 10; i++) link.send(0, 'sam-1', 'sam', 'uma', { i, text }, { ref: `live${i}` });
    for (let i = 0; i < 10; i++) assert.equal((await link.answerTo(`live${i}`)).op, 'senderAck');
    await link.next('deliverToUser', (c) => c.user === 'uma' && msgsIn(c.frame).some((m) => (m.data as { i: number }).i === 9));
    const frames = link.all('deliverToUser', (c) => c.user === 'uma');
    for (const c of frames) {
      assert.ok(Buffer.byteLength(c.frame) <= link.maxFrameBytes, `a frame of ${Buffer.byteLength(c.frame)} bytes`);
      // Each message is first delivered here, at once: all of a frame's messages are measured, from a commit after the send.
      assert.equal(c.live, msgsIn(c.frame).length);
      assert.ok(c.arrivedAt >= sentAt && c.arrivedAt <= epochMs(), `arrivedAt ${c.arrivedAt} after ${sentAt}`);
    }
    assert.equal(frames.reduce((sum, c) => sum + c.live, 0), 10);
    for (const c of frames) for (const m of msgsIn(c.frame)) link.ack(1, 'uma-1', 'uma', m.id as string);
  });

  test('data too large for any frame is refused with E_TOO_LARGE, from the embedding API too; nothing is stored', async () => {
    const { link, broker } = t;
    const accepted = broker.stats.accepted;
    const huge = 'y'.repeat(40_000);
    await assert.rejects(broker.send('tia', huge), (err: Error & { code?: string }) => err.code === 'E_TOO_LARGE' && /over the \d+ one message may carry/.test(err.message));
    assert.throws(() => broker.publish('room', huge), (err: Error & { code?: string }) => err.code === 'E_TOO_LARGE');
    assert.equal(broker.stats.accepted, accepted);
    assert.equal(link.all('groupPub', (c) => c.group === 'room').length, 0);
  });
});

describe('broker: a stored message larger than the rings now carry', () => {
  test('is dead-lettered when due, its size known from its metadata, and the messages behind it are delivered', async () => {
    const first = await startBroker();
    const big = await first.broker.send('vic', 'w'.repeat(100_000), { pri: 2 });
    const small = await first.broker.send('vic', 'small');
    await first.close(true);
    // Rings of 64 KB carry frames of about 32 KB: the 100 KB message was stored under 4 MiB rings.
    const t = await startBroker({ dataDir: first.dataDir, performance: { ring_bytes: 64 * 1024 }, server: { max_payload: 16 * 1024 } });
    try {
      t.link.online(0, 'vic-1', 'vic');
      const delivered = await t.link.next('deliverToSid', (c) => c.sid === 'vic-1');
      assert.deepEqual(msgsIn(delivered.frame).map((m) => m.id), [small]);
      const letter = await until(() => t.store.getDead(big), 'the undeliverable message dead-lettered');
      assert.match(letter.reason, /^undeliverable: its data of 100002 bytes is over the \d+ one message may carry between threads \(performance\.ring_bytes\)$/);
      assert.equal((JSON.parse(letter.data) as string).length, 100_000, 'its data moved from the queue to the dead letter');
      assert.equal(t.broker.stats.dead_lettered, 1);
      assert.equal(t.broker.stats.stored, 1, 'the small one, awaiting its ack');
    } finally {
      await t.close();
    }
  });
});

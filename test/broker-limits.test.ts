import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { OcsError } from '../src/protocol/errors.js';
import { msgsIn, sleep, startBroker, type TestBroker } from './helpers/broker.js';
import { until } from './helpers/messaging.js';

describe('broker: limits on what is stored (per sender, whole store)', () => {
  let t: TestBroker;
  before(async () => {
    t = await startBroker({ delivery: { max_stored_per_sender: 3 }, store: { max_messages: 6, max_bytes: 200 } });
  });
  after(() => t.close());

  /** A client's send from `from` (connection `from`-1 on shard 0): its ack or its error. */
  const send = async (from: string, to: string, data: unknown, ref: string) => {
    t.link.send(0, `${from}-1`, from, to, data, { ref });
    return t.link.answerTo(ref);
  };

  test('one client may have at most delivery.max_stored_per_sender messages stored; the next gets E_QUEUE_FULL naming the limit; others may still send', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await send('spammer', `nobody-${i}`, 'x', `s${i}`)).op, 'senderAck');
    const refused = await send('spammer', 'nobody-3', 'x', 's3');
    assert.equal(refused.op, 'error');
    assert.equal(refused.op === 'error' && refused.code, 'E_QUEUE_FULL');
    assert.match(refused.op === 'error' ? refused.message : '', /spammer has 3 stored messages \(delivery\.max_stored_per_sender\)/);
    assert.equal((await send('quiet', 'nobody-0', 'x', 'q0')).op, 'senderAck');
    assert.equal(t.broker.stats.queue_full, 1);
  });

  test('the embedding API is not held to the sender limit (its messages count against their `from` all the same)', async () => {
    const id = await t.broker.send('nobody-9', 'from the app', { from: 'spammer' });
    assert.match(id, /^test-/);
  });

  test('a delivered and acknowledged message no longer counts against its sender', async () => {
    for (const user of ['nobody-0', 'nobody-9']) {
      t.link.online(1, `${user}-1`, user);
      const delivered = await t.link.next('deliverToSid', (c) => c.sid === `${user}-1`);
      for (const m of msgsIn(delivered.frame)) t.link.ack(1, `${user}-1`, user, m.id as string);
      t.link.offline(1, `${user}-1`, user);
    }
    assert.equal((await send('spammer', 'nobody-4', 'x', 's4')).op, 'senderAck');
  });

  test('the whole store holds at most store.max_messages messages and store.max_bytes bytes of data; the stats count both', async () => {
    // Stored now: spammer's s1, s2, s4 (3 bytes of JSON each).
    assert.deepEqual([t.broker.stats.stored, t.broker.stats.stored_bytes], [3, 9]);
    const bytes = await send('other', 'nobody-5', 'y'.repeat(190), 'big');
    assert.equal(bytes.op === 'error' && bytes.code, 'E_QUEUE_FULL');
    assert.match(bytes.op === 'error' ? bytes.message : '', /the store holds 9 bytes of messages; this one has 192 \(store\.max_bytes\)/);
    for (const ref of ['o1', 'o2', 'o3']) assert.equal((await send('other', `nobody-${ref}`, 'z', ref)).op, 'senderAck');
    const full = await send('other', 'nobody-o4', 'z', 'o4');
    assert.equal(full.op === 'error' && full.code, 'E_QUEUE_FULL');
    assert.match(full.op === 'error' ? full.message : '', /the store holds 6 messages \(store\.max_messages\)/);
    await assert.rejects(t.broker.send('nobody-8', 'z'), (err: unknown) => err instanceof OcsError && err.code === 'E_QUEUE_FULL' && /store\.max_messages/.test(err.message));
    assert.deepEqual([t.broker.stats.stored, t.broker.stats.stored_bytes], [6, 18]);
  });
});

describe("broker: a waiting message's data stays on disk", () => {
  let t: TestBroker;
  before(async () => {
    // Redeliveries far enough apart that a rewrite commits between two of them.
    t = await startBroker({ delivery: { ack_timeout: 0.3, max_attempts: 10 } });
  });
  after(() => t.close());

  /** Rewrites the stored data of message `id` behind the broker's back. */
  const rewrite = (id: string, data: unknown): void => {
    const meta = [...t.store.loadQueue()].find((m) => m.id === id)!;
    const { bytes: _bytes, ...fields } = meta;
    void t.store.put({ ...fields, data: JSON.stringify(data) });
  };

  test('a message for an offline user is read back from the store when it is delivered, not kept in memory', async () => {
    const id = await t.broker.send('ivy', 'as sent', { pri: 3 });
    rewrite(id, 'as on disk');
    await t.store.flushed();
    t.link.online(0, 'ivy-1', 'ivy');
    const delivered = await t.link.next('deliverToSid', (c) => c.sid === 'ivy-1');
    assert.deepEqual(msgsIn(delivered.frame).map((m) => m.data), ['as on disk']);
    t.link.ack(0, 'ivy-1', 'ivy', id);
    t.link.offline(0, 'ivy-1', 'ivy');
  });

  test('a redelivery reads the data again: no encoded frame is kept between deliveries', async () => {
    t.link.online(0, 'joe-1', 'joe');
    const id = await t.broker.send('joe', 'first', { pri: 3 });
    await t.link.next('deliverToUser', (c) => c.user === 'joe');
    rewrite(id, 'second');
    await t.store.flushed();
    const again = await t.link.next('deliverToUser', (c) => c.user === 'joe' && msgsIn(c.frame)[0]!.data === 'second');
    assert.equal(msgsIn(again.frame)[0]!.id, id);
    t.link.ack(0, 'joe-1', 'joe', id);
    t.link.offline(0, 'joe-1', 'joe');
  });
});

describe('broker: a requeue obeys the limits too', () => {
  let t: TestBroker;
  before(async () => {
    t = await startBroker({ delivery: { max_pending_per_user: 2 } });
    t.broker.registerProcessor('broken', () => {
      throw new Error('no');
    });
  });
  after(() => t.close());

  test("a dead letter is not requeued into a recipient's full queue (409 conflict, E_QUEUE_FULL), and stays in the dead-letter queue", async () => {
    t.link.send(0, 'ops-1', 'ops', 'kim', { type: 'broken' }, { ref: 'dead' });
    const dead = await t.link.answerTo('dead');
    assert.ok(dead.op === 'senderAck');
    await t.broker.send('kim', 'one', { pri: 2 });
    await t.broker.send('kim', 'two', { pri: 2 });
    const refused = await t.link.adminRequest('post', `/admin/dlq/${dead.id}/requeue`);
    assert.equal(refused.status, 409);
    assert.equal(refused.body.code, 'conflict');
    assert.match(String(refused.body.message), /^E_QUEUE_FULL: not requeued: kim has 2 stored messages \(delivery\.max_pending_per_user\)/);
    assert.equal((await t.link.adminRequest('get', `/admin/dlq/${dead.id}`)).status, 200, 'still a dead letter');
    assert.equal(t.broker.stats.stored, 2);
  });
});

describe('broker: a requeued dead letter is a message of its own', () => {
  let t: TestBroker;
  before(async () => {
    t = await startBroker({ delivery: { max_pending_per_user: 1 } });
  });
  after(() => t.close());

  test('a scheduled LOW send evicted before its time and requeued is delivered once, not before its time, and its ack frees its window slot', async () => {
    const at = Date.now() + 500;
    t.link.send(0, 'ops-1', 'ops', 'lee', 'later, low', { ref: 'low', pri: 0, at });
    const low = await t.link.answerTo('low');
    assert.ok(low.op === 'senderAck');
    // Lee's queue holds one: a NORMAL send evicts the scheduled LOW one to the dead-letter queue.
    t.link.send(0, 'ops-1', 'ops', 'lee', 'now', { ref: 'now' });
    assert.equal((await t.link.answerTo('now')).op, 'senderAck');
    assert.equal(t.broker.stats.dropped_low, 1);
    t.link.online(0, 'lee-1', 'lee');
    const first = await t.link.next('deliverToSid', (c) => c.sid === 'lee-1');
    for (const m of msgsIn(first.frame)) t.link.ack(0, 'lee-1', 'lee', m.id as string);
    await until(() => t.broker.depth().stored === 0 || undefined, 'the ack');
    const requeued = await t.link.adminRequest('post', `/admin/dlq/${low.id}/requeue`);
    assert.equal(requeued.status, 200);
    const calls = () => [...t.link.all('deliverToSid', (c) => msgsIn(c.frame).some((m) => m.id === low.id)), ...t.link.all('deliverToUser', (c) => msgsIn(c.frame).some((m) => m.id === low.id))];
    const deliveries = (): number => calls().length;
    await until(() => deliveries() > 0 || undefined, 'the requeued delivery');
    assert.ok(calls()[0]!.time >= at, `delivered ${at - calls()[0]!.time} ms before its time`);
    // Past the evicted send's own time: its old schedule must not deliver the requeued message again.
    await sleep(Math.max(0, at - Date.now()) + 200);
    assert.equal(deliveries(), 1, 'delivered once');
    t.link.ack(0, 'lee-1', 'lee', low.id);
    await until(() => (t.broker.depth().inflight === 0 && t.broker.depth().stored === 0) || undefined, 'nothing stored, nothing in flight');
  });

  test('a LOW message its recipient holds is not dropped to make room: the next send is refused, and the held one can still be acknowledged', async () => {
    t.link.online(0, 'max-1', 'max');
    t.link.send(0, 'ops-1', 'ops', 'max', 'low, delivered', { ref: 'held', pri: 0 });
    const held = await t.link.answerTo('held');
    assert.ok(held.op === 'senderAck');
    await t.link.next('deliverToUser', (c) => c.user === 'max');
    t.link.send(0, 'ops-1', 'ops', 'max', 'normal', { ref: 'next' });
    const refused = await t.link.answerTo('next');
    assert.equal(refused.op === 'error' && refused.code, 'E_QUEUE_FULL');
    assert.match(refused.op === 'error' ? refused.message : '', /none of them is LOW and waiting/);
    t.link.ack(0, 'max-1', 'max', held.id);
    await until(() => t.broker.depth().stored === 0 || undefined, 'the ack taken');
    assert.equal(t.link.all('error', (c) => c.sid === 'max-1').length, 0, 'no E_UNKNOWN_ID for the ack');
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { msgsIn, startBroker, type TestBroker } from './helpers/broker.js';
import { until } from './helpers/messaging.js';

describe('broker: redelivery with backoff, then the dead-letter queue', () => {
  let t: TestBroker;
  before(async () => {
    t = await startBroker({ delivery: { ack_timeout: 0.05, backoff_multiplier: 2, max_attempts: 3 } });
  });
  after(() => t.close());

  test('an unacknowledged message comes again after ack_timeout, each wait backoff_multiplier times the last, and is dead-lettered after max_attempts', async () => {
    const { link, broker, store } = t;
    link.online(0, 'ann-1', 'ann');
    // CRITICAL leaves at once (no batching turn), so the recorded times are the deliveries' own.
    const id = await broker.send('ann', 'ignored', { pri: 3 });
    const letter = await until(() => store.getDead(id), 'the dead letter');
    const deliveries = link.all('deliverToUser', (c) => c.user === 'ann');
    assert.equal(deliveries.length, 3);
    for (const c of deliveries) assert.equal(msgsIn(c.frame)[0]!.id, id);
    // Lower bounds only: a deadline is never early, a busy machine may make it late. The slack
    // covers the moment between setting a deadline and recording the delivery; it is far below
    // the doubling, so the waits still show the backoff.
    const times = [...deliveries.map((c) => c.time), letter.failedAt];
    const waits = [50, 100, 200];
    for (let i = 0; i < waits.length; i++) assert.ok(times[i + 1]! - times[i]! >= waits[i]! - 5, `wait ${i + 1} was ${times[i + 1]! - times[i]!} ms, expected at least ${waits[i]} ms`);
    assert.equal(letter.attempts, 3);
    assert.match(letter.reason, /not acknowledged after 3 deliveries \(delivery.max_attempts\)/);
    assert.deepEqual([broker.stats.delivered, broker.stats.redelivered, broker.stats.dead_lettered], [3, 2, 1]);
    link.ack(0, 'ann-1', 'ann', id);
    assert.equal((await link.next('error', (c) => c.sid === 'ann-1')).code, 'E_UNKNOWN_ID', 'a dead letter no longer awaits an ack');
    link.offline(0, 'ann-1', 'ann');
  });

  test('waits capped at max_backoff: every delivery still has its deadline, and the last is dead-lettered', async () => {
    const capped = await startBroker({ delivery: { ack_timeout: 0.05, backoff_multiplier: 2, max_backoff: 0.05, max_attempts: 3 } });
    try {
      const { link, broker, store } = capped;
      link.online(0, 'cap-1', 'cap');
      const id = await broker.send('cap', 'capped', { pri: 3 });
      const letter = await until(() => store.getDead(id), 'the dead letter');
      assert.equal(letter.attempts, 3);
      assert.equal(link.all('deliverToUser', (c) => c.user === 'cap').length, 3);
      link.offline(0, 'cap-1', 'cap');
    } finally {
      await capped.close();
    }
  });

  test('a message acknowledged after a redelivery is settled', async () => {
    const { link, broker, store } = t;
    link.online(0, 'ben-1', 'ben');
    const id = await broker.send('ben', 'second time lucky', { pri: 3 });
    await until(() => (link.all('deliverToUser', (c) => c.user === 'ben').length === 2 ? true : undefined), 'the redelivery');
    link.ack(0, 'ben-1', 'ben', id);
    await store.flushed();
    assert.ok(![...store.loadQueue()].some((m) => m.id === id));
    assert.equal(store.getDead(id), undefined);
    link.offline(0, 'ben-1', 'ben');
  });
});

describe('broker: the per-recipient cap (delivery.max_pending_per_user)', () => {
  let t: TestBroker;
  before(async () => {
    t = await startBroker({ delivery: { max_pending_per_user: 3 } });
  });
  after(() => t.close());

  test('a full queue drops its oldest LOW message to the dead-letter queue; full of non-LOW messages, it refuses with E_QUEUE_FULL', async () => {
    const { link, broker, store } = t;
    const ids = new Map<string, string>();
    const send = async (text: string, pri: number): Promise<void> => {
      link.send(0, 'zoe-1', 'zoe', 'max', text, { ref: text, pri });
      const answer = await link.answerTo(text);
      if (answer.op === 'senderAck') ids.set(text, answer.id);
    };
    await send('low-1', 0);
    await send('normal-1', 1);
    await send('low-2', 0);
    await send('normal-2', 1);
    assert.equal(broker.stats.dropped_low, 1);
    const dropped = store.getDead(ids.get('low-1')!);
    assert.match(dropped!.reason, /queue full: dropped as the oldest LOW message for max/);
    await send('normal-3', 1);
    assert.ok(store.getDead(ids.get('low-2')!), 'then the next oldest LOW');
    await send('normal-4', 1);
    const refused = await link.next('error', (c) => c.ref === 'normal-4');
    assert.equal(refused.code, 'E_QUEUE_FULL');
    assert.match(refused.message, /max has 3 stored messages/);
    assert.deepEqual([broker.stats.dropped_low, broker.stats.queue_full], [2, 1]);

    link.online(1, 'max-1', 'max');
    assert.equal((await link.next('welcome', (c) => c.sid === 'max-1')).pending, 3);
    const frame = await link.next('deliverToSid', (c) => c.sid === 'max-1');
    assert.deepEqual(msgsIn(frame.frame).map((m) => m.data), ['normal-1', 'normal-2', 'normal-3']);
  });
});

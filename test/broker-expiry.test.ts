import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { msgsIn, sleep, startBroker, type TestBroker } from './helpers/broker.js';
import { until } from './helpers/messaging.js';

describe('broker: messages for users who never come back expire (delivery.ttl)', () => {
  let t: TestBroker;
  before(async () => {
    t = await startBroker({ delivery: { ttl: 0.2, ack_timeout: 0.1, backoff_multiplier: 1, max_attempts: 100 } });
  });
  after(() => t.close());

  test('a message nobody comes for moves to the dead-letter queue delivery.ttl after it was accepted, with the reason', async () => {
    const sent = Date.now();
    const id = await t.broker.send('gone', 'hello?');
    const letter = await until(() => t.store.getDead(id), 'the expired message');
    assert.ok(letter.failedAt - sent >= 200, `expired after ${letter.failedAt - sent} ms`);
    assert.equal(letter.reason, 'expired: waited 0.2 s for a recipient (delivery.ttl)');
    assert.deepEqual([letter.attempts, JSON.parse(letter.data)], [0, 'hello?']);
    assert.equal(t.broker.stats.expired, 1);
    assert.ok(![...t.store.loadQueue()].some((m) => m.id === id), 'out of the queue');
  });

  test('a message in flight to a connected user does not expire; once the user has left, it expires delivery.ttl after its last delivery', async () => {
    t.link.online(0, 'sam-1', 'sam');
    const id = await t.broker.send('sam', 'keep trying', { pri: 3 });
    await sleep(400); // twice the ttl, redelivered every 100 ms meanwhile
    assert.equal(t.store.getDead(id), undefined);
    const deliveries = t.link.all('deliverToUser', (c) => c.user === 'sam').length;
    assert.ok(deliveries >= 3, `${deliveries} deliveries`);
    t.link.offline(0, 'sam-1', 'sam');
    const left = Date.now();
    const letter = await until(() => t.store.getDead(id), 'the expired message');
    assert.ok(letter.failedAt - left >= 200, `expired ${letter.failedAt - left} ms after the user left`);
    assert.match(letter.reason, /delivery\.ttl/);
    assert.equal(letter.attempts, deliveries);
  });

  test('an acknowledged message is simply gone: nothing expires later', async () => {
    t.link.online(0, 'una-1', 'una');
    const id = await t.broker.send('una', 'got it', { pri: 3 });
    const delivered = await t.link.next('deliverToUser', (c) => c.user === 'una');
    t.link.ack(0, 'una-1', 'una', msgsIn(delivered.frame)[0]!.id as string);
    t.link.offline(0, 'una-1', 'una');
    await sleep(300);
    assert.equal(t.store.getDead(id), undefined);
  });

  test('a scheduled message counts its wait from `at`, not from when it was sent', async () => {
    const at = Date.now() + 300;
    const id = await t.broker.send('gone', 'later', { at });
    await sleep(350); // past the ttl counted from acceptance
    assert.equal(t.store.getDead(id), undefined, 'not expired before it was deliverable');
    const letter = await until(() => t.store.getDead(id), 'the expired message');
    assert.ok(letter.failedAt - at >= 200, `expired ${letter.failedAt - at} ms after at`);
  });
});

describe('broker: expiry across a restart', () => {
  test('messages stored longer ago than delivery.ttl expire at start-up; with ttl 0 they never do', async () => {
    const first = await startBroker({ delivery: { ttl: 0 } });
    const id = await first.broker.send('away', 'old news');
    await sleep(300);
    assert.equal(first.store.getDead(id), undefined, 'ttl 0: kept');
    await first.close(true);

    const second = await startBroker({ dataDir: first.dataDir, delivery: { ttl: 0.2 } });
    try {
      const letter = await until(() => second.store.getDead(id), 'the expired message');
      assert.match(letter.reason, /delivery\.ttl/);
      assert.equal(second.broker.stats.stored, 0);
    } finally {
      await second.close();
    }
  });
});

describe('broker: a requeued dead letter across a restart', () => {
  test('its delivery.ttl counts from the requeue, after a restart too, not from when it was first accepted', async () => {
    const first = await startBroker({ delivery: { ttl: 60 } });
    first.broker.registerProcessor('broken', () => {
      throw new Error('no');
    });
    first.link.send(0, 'ops-1', 'ops', 'vic', { type: 'broken' }, { ref: 'dead' });
    const dead = await first.link.answerTo('dead');
    assert.ok(dead.op === 'senderAck');
    await sleep(700); // older than the ttl the next start runs with
    assert.equal((await first.link.adminRequest('post', `/admin/dlq/${dead.id}/requeue`)).status, 200);
    await first.close(true);

    const second = await startBroker({ dataDir: first.dataDir, delivery: { ttl: 0.5 } });
    try {
      await sleep(100);
      assert.equal(second.store.getDead(dead.id), undefined, 'not expired at start-up');
      assert.equal(second.broker.stats.stored, 1);
      const letter = await until(() => second.store.getDead(dead.id), 'the expired message');
      assert.match(letter.reason, /delivery\.ttl/);
    } finally {
      await second.close();
    }
  });
});

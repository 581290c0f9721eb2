/**
 * A message is delivered to its online recipient while its store commit runs (intake.ts). When
 * that commit fails, its sender is refused (E_STORE_UNAVAILABLE) and the broker forgets it;
 * the recipient that got it keeps it (at-least-once: the sender will send it again).
 *
 * A real commit failure cannot be provoked safely: lmdb-js 3.5.6 aborts the process when LMDB
 * fails a page write (src/store/store.ts), which is why the store refuses writes before the disk
 * is full, and those refusals never deliver (messaging-full-disk.test.ts). So here the real
 * store's put() is replaced, for the sends of this test only, by one whose commit fails 50 ms later.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { StoredMessage } from '../src/store/messages.js';
import { msgsIn, sleep, startBroker, type TestBroker } from './helpers/broker.js';

describe('broker: a commit that fails after the message went out', () => {
  let t: TestBroker;
  before(async () => {
    // An ack deadline well past the failing commit's 50 ms, so that a busy machine does not reach it first.
    t = await startBroker({ delivery: { ack_timeout: 0.25, max_attempts: 3 } });
  });
  after(() => t.close());

  test('the sender gets E_STORE_UNAVAILABLE, the recipient keeps what it got, and nothing stays in memory', async () => {
    const { link, store, broker } = t;
    const realPut = store.put.bind(store);
    const failed: StoredMessage[] = [];
    store.put = (m: StoredMessage) => {
      failed.push(m);
      return sleep(50).then(() => false);
    };
    try {
      link.online(0, 'kai-1', 'kai');
      await link.next('welcome', (c) => c.sid === 'kai-1');
      link.send(1, 'lia-1', 'lia', 'kai', { n: 1 }, { ref: 'doomed' });
      const delivery = await link.next('deliverToUser', (c) => c.user === 'kai');
      const refusal = await link.next('error', (c) => c.ref === 'doomed');
      assert.equal(refusal.code, 'E_STORE_UNAVAILABLE');
      assert.ok(link.calls.indexOf(delivery) < link.calls.indexOf(refusal), 'delivered before the commit failed');
      assert.equal(link.all('senderAck', (c) => c.ref === 'doomed').length, 0);
      const [msg] = msgsIn(delivery.frame);
      assert.equal(msg!.id, failed[0]!.id);
      assert.deepEqual(broker.depth(), { stored: 0, inflight: 0 }, 'nothing left in memory: no redelivery, no ack deadline');
      await sleep(600); // two ack deadlines: none fires
      assert.equal(link.all('deliverToUser', (c) => c.user === 'kai').length, 1, 'not delivered again');
      link.ack(0, 'kai-1', 'kai', msg!.id as string);
      const unknown = await link.next('error', (c) => c.sid === 'kai-1');
      assert.equal(unknown.code, 'E_UNKNOWN_ID', 'its ack finds nothing (the SDK ignores this code)');
    } finally {
      store.put = realPut;
    }
    link.send(1, 'lia-1', 'lia', 'kai', { n: 2 }, { ref: 'again' });
    const again = await link.next('senderAck', (c) => c.ref === 'again');
    const redo = await link.next('deliverToUser', (c) => c.user === 'kai' && msgsIn(c.frame).some((m) => m.id === again.id));
    assert.ok(redo);
    link.ack(0, 'kai-1', 'kai', again.id);
    await sleep(20);
    assert.deepEqual(broker.depth(), { stored: 0, inflight: 0 });
  });
});

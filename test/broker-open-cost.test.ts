import assert from 'node:assert/strict';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { startBroker, type TestBroker } from './helpers/broker.js';

/**
 * A new connection of a user had the broker walk the user's whole queue (up to
 * delivery.max_pending_per_user, 10,000) to count its `welcome.pending`, even when the resend
 * budget then let nothing go: 1,000 connections of a user with a full queue (100 may be open
 * at once) opened and closed cost the primary thread 513-844 ms (3 runs before the fix), against
 * 20-50 ms for a user with one message. The counts are now kept as messages change state.
 */
describe('broker: opening a connection costs the same whatever its user has queued', () => {
  let t: TestBroker;
  const QUEUED = 10_000;
  const OPENS = 1_000;

  async function fill(user: string, count: number): Promise<void> {
    let last = '';
    for (let i = 0; i < count; i++) {
      last = `${user}-${i}`;
      t.link.send(0, 'sender-1', `sender-${user}`, user, i, { ref: last });
    }
    assert.equal((await t.link.answerTo(last)).op, 'senderAck');
  }

  before(async () => {
    t = await startBroker({ store: { sync: 'none' } });
    t.link.online(0, 'sender-1', 'sender');
    await fill('full', QUEUED);
    await fill('few', 1);
    for (const user of ['full', 'few']) {
      // One connection gets the window and never acknowledges; a second one has it all resent
      // (the budget's one window per ack_timeout), so later connections get nothing at once.
      t.link.online(0, `${user}-first`, user);
      await nextTurn();
      t.link.online(0, `${user}-second`, user);
      await nextTurn();
    }
    const resent = t.link.all('deliverToSid', (c) => c.sid === 'full-second').length;
    assert.ok(resent > 0, 'the second connection had the messages in flight resent');
  });
  after(() => t.close());

  /** Milliseconds for OPENS connections of `user` opened and closed in one turn, and the turn after. */
  async function openTime(user: string): Promise<number> {
    const start = performance.now();
    for (let i = 1; i <= OPENS; i++) {
      t.link.online(0, `${user}-${i}`, user);
      t.link.offline(0, `${user}-${i}`, user);
    }
    await nextTurn();
    return performance.now() - start;
  }

  test(`${OPENS} connections of a user with ${QUEUED} queued cost about what those of a user with one do`, async (context) => {
    const calls = t.link.calls.length;
    const few = await openTime('few');
    const full = await openTime('full');
    context.diagnostic(`${OPENS} opens: ${full.toFixed(1)} ms with ${QUEUED} queued, ${few.toFixed(1)} ms with 1`);
    // What they receive is unchanged: a welcome counting the whole queue, and nothing over the budget.
    const said = t.link.calls.slice(calls);
    const welcomes = said.filter((c) => c.op === 'welcome' && c.sid.startsWith('full-'));
    assert.equal(welcomes.length, OPENS);
    assert.ok(welcomes.every((c) => c.op === 'welcome' && c.pending === QUEUED));
    assert.equal(said.filter((c) => (c.op === 'deliverToSid' && c.sid.startsWith('full-')) || (c.op === 'deliverToUser' && c.user === 'full')).length, 0);
    // Before: one walk of the 10,000 per connection.
    assert.ok(full < 3 * few + 25, `${OPENS} opens took ${full.toFixed(1)} ms with ${QUEUED} queued, ${few.toFixed(1)} ms with one`);
  });
});

import assert from 'node:assert/strict';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { msgsIn, startBroker, type TestBroker } from './helpers/broker.js';

/**
 * While some group is blocked (its `any` messages wait for a member's window), every delivery
 * that leaves a window (an ack) had the broker look at every group of every connection of the
 * acknowledging user: a user with 100 connections of 1,000 groups each (the default limits) made
 * each of its acks cost 100,000 look-ups in the primary thread. Now a user is looked at once per
 * turn, however many of its acks the turn holds.
 */
describe('broker: an ack costs the same whatever the groups of its user', () => {
  let t: TestBroker;
  let refs = 0;
  const MEMBERSHIPS = 50_000;
  const CONNECTIONS = 50;
  const ACKS = 1_000;

  before(async () => {
    // A window of 64 KiB: two any messages of 40 KB to one member do not fit it together.
    t = await startBroker({ delivery: { max_inflight_bytes_per_user: 65_536 } });
    t.link.online(0, 'm-1', 'member');
    t.link.join(0, 'm-1', 'blocked');
    for (const n of [0, 1]) {
      const ref = `b${n}`;
      t.link.any(0, 'sender-1', 'sender', 'blocked', 'x'.repeat(40_000), { ref });
      assert.equal((await t.link.answerTo(ref)).op, 'senderAck');
    }
    assert.equal(t.link.all('deliverToSid', (c) => c.sid === 'm-1').length, 1, 'the second any waits: the group is blocked');
    const perConnection = MEMBERSHIPS / CONNECTIONS;
    for (let c = 0; c < CONNECTIONS; c++) {
      t.link.online(0, `many-${c}`, 'many');
      for (let g = 0; g < perConnection; g++) t.link.join(0, `many-${c}`, `g.${c}.${g}`);
    }
    t.link.online(0, 'few-1', 'few');
    t.link.join(0, 'few-1', 'g.few');
  });
  after(() => t.close());

  /** Stores ACKS messages for `user` and returns their ids once all were delivered. */
  async function delivered(user: string): Promise<string[]> {
    const before = t.link.calls.length;
    let last = '';
    for (let i = 0; i < ACKS; i++) {
      last = `r${refs++}`;
      t.link.send(0, 'sender-1', 'sender', user, i, { ref: last });
    }
    assert.equal((await t.link.answerTo(last)).op, 'senderAck');
    await nextTurn();
    const ids = t.link.calls
      .slice(before)
      .flatMap((c) => (c.op === 'deliverToUser' && c.user === user ? msgsIn(c.frame) : []))
      .map((m) => m.id as string);
    assert.equal(ids.length, ACKS, `all of ${user}'s messages were delivered`);
    return ids;
  }

  /** Milliseconds the broker takes to settle `ids`, acknowledged in one turn (as a shard's ring brings a flood of acks), and the turn after. */
  async function ackTime(sid: string, user: string, ids: string[]): Promise<number> {
    const start = performance.now();
    for (const id of ids) t.link.ack(0, sid, user, id);
    await nextTurn();
    return performance.now() - start;
  }

  test(`${ACKS} acks of a user in ${MEMBERSHIPS} groups cost about what those of a user in one group do`, async (context) => {
    const few = await ackTime('few-1', 'few', await delivered('few'));
    const many = await ackTime('many-0', 'many', await delivered('many'));
    assert.equal(t.link.all('error', (c) => c.code === 'E_UNKNOWN_ID').length, 0, 'every ack was taken');
    context.diagnostic(`${ACKS} acks: ${many.toFixed(1)} ms in ${MEMBERSHIPS} groups, ${few.toFixed(1)} ms in one`);
    // Before: one look at each of the 50,000 groups per ack, 50 million in all (hundreds of ms).
    assert.ok(many < 3 * few + 25, `acks of the user in ${MEMBERSHIPS} groups took ${many.toFixed(1)} ms, against ${few.toFixed(1)} ms in one group`);
  });
});

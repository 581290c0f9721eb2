import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { msgsIn, startBroker, type TestBroker } from './helpers/broker.js';

describe('broker: any goes to exactly one member, picked by the strategy', () => {
  let t: TestBroker;
  let refs = 0;
  before(async () => {
    t = await startBroker({ delivery: { group_strategies: { lc: 'least_connections' }, weights: { wes: 3 } } });
  });
  after(() => t.close());

  /** Sends an any (CRITICAL: delivered in the same turn as the sender's ack) and returns the sid that got it and the id. */
  async function any(group: string, extra: { strategy?: string } = {}): Promise<{ sid: string; id: string }> {
    const ref = `r${refs++}`;
    const before = t.link.calls.length;
    t.link.any(0, 'sender-1', 'sender', group, ref, { ref, pri: 3, ...extra });
    const ack = await t.link.answerTo(ref);
    assert.ok(ack.op === 'senderAck');
    const deliveries = t.link.calls.slice(before).filter((c) => c.op === 'deliverToSid' || c.op === 'deliverToUser');
    assert.equal(deliveries.length, 1, 'one delivery, to one connection');
    const delivery = deliveries[0]!;
    assert.ok(delivery.op === 'deliverToSid');
    const [msg] = msgsIn(delivery.frame);
    assert.deepEqual([msg!.group, msg!.data, msg!.ackReq], [group, ref, true]);
    return { sid: delivery.sid, id: ack.id };
  }

  function join(group: string, members: Array<[shard: number, sid: string, user: string, weight?: number]>): void {
    for (const [shard, sid, user, weight] of members) {
      t.link.online(shard, sid, user);
      t.link.join(shard, sid, group, weight ?? 0);
    }
  }

  function tally(sids: string[]): Map<string, number> {
    const counts = new Map<string, number>();
    for (const sid of sids) counts.set(sid, (counts.get(sid) ?? 0) + 1);
    return counts;
  }

  test('round_robin (the default) takes the members in turn', async () => {
    join('rr', [[0, 'rr-a', 'ria'], [1, 'rr-b', 'rob'], [0, 'rr-c', 'rex']]);
    const sids: string[] = [];
    for (let i = 0; i < 6; i++) sids.push((await any('rr')).sid);
    assert.deepEqual(sids.slice(3), sids.slice(0, 3), 'the same order each round');
    assert.deepEqual([...tally(sids).values()], [2, 2, 2]);
  });

  test('least_connections picks the member whose user holds the fewest unacknowledged deliveries', async () => {
    join('lc', [[0, 'lc-p', 'pam'], [1, 'lc-q', 'quin']]);
    const first = await any('lc');
    const second = await any('lc');
    assert.notEqual(second.sid, first.sid, 'the member without a delivery in flight');
    const user = second.sid === 'lc-p' ? 'pam' : 'quin';
    t.link.ack(second.sid === 'lc-p' ? 0 : 1, second.sid, user, second.id);
    assert.equal((await any('lc')).sid, second.sid, 'it acknowledged, the other still holds one');
  });

  test('weighted shares by weight: the token claim, else delivery.weights, else 1', async () => {
    t.broker.setGroupStrategy('wt', 'weighted');
    join('wt', [[0, 'wt-w', 'wes'], [1, 'wt-v', 'vic', 2], [0, 'wt-u', 'ula']]);
    const sids: string[] = [];
    for (let i = 0; i < 12; i++) sids.push((await any('wt')).sid);
    assert.deepEqual(Object.fromEntries(tally(sids)), { 'wt-w': 6, 'wt-v': 4, 'wt-u': 2 });
  });

  test('weighted keeps delivering, taking turns, when the weights add up past what a double holds (claims of 1e308, which only a shard record can still carry)', async () => {
    join('huge', [[0, 'hg-a', 'hal', 1e308], [1, 'hg-b', 'han', 1e308], [0, 'hg-c', 'hap']]);
    const sids: string[] = [];
    for (let i = 0; i < 6; i++) sids.push((await any('huge', { strategy: 'weighted' })).sid);
    assert.deepEqual(Object.fromEntries(tally(sids)), { 'hg-a': 2, 'hg-b': 2, 'hg-c': 2 });
  });

  test('a strategy in the frame overrides the group one', async () => {
    const sids: string[] = [];
    for (let i = 0; i < 3; i++) sids.push((await any('wt', { strategy: 'round_robin' })).sid);
    assert.deepEqual(sids, ['wt-w', 'wt-v', 'wt-u']);
  });

  test('an any to a group without members waits for the first member to join', async () => {
    t.link.any(0, 'sender-1', 'sender', 'empty', 'kept', { ref: 'kept' });
    await t.link.answerTo('kept');
    t.link.online(1, 'em-1', 'emma');
    assert.equal((await t.link.next('welcome', (c) => c.sid === 'em-1')).pending, 0, 'an any is not counted as a user\'s pending message');
    t.link.join(1, 'em-1', 'empty');
    const delivery = await t.link.next('deliverToSid', (c) => c.sid === 'em-1');
    assert.equal(msgsIn(delivery.frame)[0]!.data, 'kept');
  });
});

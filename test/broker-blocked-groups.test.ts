import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startBroker, sleep, type TestBroker } from './helpers/broker.js';

/**
 * A group whose `any` messages wait for a member's window is "blocked" (delivery.ts), and was
 * unblocked only by a pump of the group, which runs when one of its members' windows frees or
 * a member joins. A group blocked while it had members, whose members then all left, was never
 * pumped again: a client could join a group, leave an `any` waiting there behind its own full
 * window, leave, and do it again under another name; once the messages expired, every such
 * name stayed in the set for good, and the set was copied at each turn that freed a window.
 */
describe('broker: a blocked group without members is forgotten', () => {
  let t: TestBroker;
  let refs = 0;
  const GROUPS = 2_000;

  /** The groups Delivery holds as blocked (private: the leak is in that set). */
  const blockedGroups = (): number => (t.broker as unknown as { route: { blockedGroups: Set<string> } }).route.blockedGroups.size;

  async function any(group: string): Promise<void> {
    const ref = `a${refs++}`;
    t.link.any(0, 'sender-1', 'sender', group, 'x', { ref });
    assert.equal((await t.link.answerTo(ref)).op, 'senderAck');
  }

  before(async () => {
    // A window of one message: one delivery the member never acknowledges fills it.
    t = await startBroker({ delivery: { max_inflight_per_user: 1, ttl: 0.5 } });
    t.link.online(0, 'm-1', 'member');
    t.link.online(0, 'sender-1', 'sender');
    const ref = 'hold';
    t.link.send(0, 'sender-1', 'sender', 'member', 'fills the window', { ref });
    assert.equal((await t.link.answerTo(ref)).op, 'senderAck');
    assert.equal(t.link.all('deliverToUser', (c) => c.user === 'member').length, 1);
  });
  after(() => t.close());

  test(`${GROUPS} groups joined, given an any that waits, and left leave nothing behind once their messages expire`, async () => {
    for (let g = 0; g < GROUPS; g++) {
      t.link.join(0, 'm-1', `g.${g}`);
      await any(`g.${g}`);
      t.link.leave(0, 'm-1', `g.${g}`);
    }
    assert.equal(t.link.all('deliverToSid').length, 0, 'no any went out: the only member had no room');
    const deadline = Date.now() + 5000;
    while (t.broker.stats.expired < GROUPS && Date.now() < deadline) await sleep(50);
    assert.equal(t.broker.stats.expired, GROUPS, 'every waiting any expired');
    assert.equal(blockedGroups(), 0, 'no group without members is held as blocked');
  });

  test('a blocked group whose member stays is unblocked when its messages are gone and the window frees', async () => {
    t.link.join(0, 'm-1', 'kept');
    await any('kept');
    assert.equal(blockedGroups(), 1);
    const deadline = Date.now() + 5000;
    while (t.broker.stats.expired < GROUPS + 1 && Date.now() < deadline) await sleep(50);
    // The member acknowledges what filled its window: the group is looked at, and found empty.
    const held = t.link.all('deliverToUser', (c) => c.user === 'member')[0]!;
    t.link.ack(0, 'm-1', 'member', (JSON.parse(held.frame) as { id: string }).id);
    await sleep(10);
    assert.equal(blockedGroups(), 0);
  });
});

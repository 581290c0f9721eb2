import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { msgsIn, startBroker, sleep, type TestBroker } from './helpers/broker.js';

/** The blocked groups the broker's Presence holds for its users, all users together (marked-memberships.ts). */
function indexedGroups(t: TestBroker): number {
  const byUser = (t.broker as unknown as { presence: { marks: { byUser: Map<string, Map<string, number>> } } }).presence.marks.byUser;
  let indexed = 0;
  for (const groups of byUser.values()) indexed += groups.size;
  return indexed;
}

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
  /** The blocked groups Presence holds for its users (marked-memberships.ts). */
  const indexed = (): number => indexedGroups(t);

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
    assert.equal(indexed(), 0, 'nor as one of its member\'s');
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
    assert.equal(indexed(), 0, 'the member\'s blocked groups are forgotten with the group');
  });
});

/**
 * A freed window is offered to the blocked groups its user is a member of, found through an
 * index Presence keeps of the blocked groups of each user in many groups (a walk of the few
 * groups of the others): it must follow members that come and go while a group is blocked,
 * connection by connection. Each case runs with users in 1 group (walked) and in 301 (indexed).
 */
for (const idle of [0, 300]) describe(`broker: a freed window is offered to every blocked group its user is in, however it came to be in it (${idle} more groups)`, () => {
  let t: TestBroker;
  let refs = 0;

  async function stored(op: 'send' | 'any', to: string): Promise<void> {
    const ref = `r${refs++}`;
    t.link[op](0, 'sender-1', 'sender', to, ref, { ref });
    assert.equal((await t.link.answerTo(ref)).op, 'senderAck');
  }

  /** The id of the one message `user` was sent, to all its connections. */
  const heldBy = (user: string): string => msgsIn(t.link.all('deliverToUser', (c) => c.user === user)[0]!.frame)[0]!.id as string;
  const anysTo = (sid: string): number => t.link.all('deliverToSid', (c) => c.sid === sid).length;

  /**
   * The `any`s connection `sid` of `user` got, once it acknowledged what filled its window: as
   * soon as one came, else after 500 ms (10 ms failed on a loaded machine, a turn not yet run).
   */
  async function anysAfterAck(sid: string, user: string): Promise<number> {
    t.link.ack(0, sid, user, heldBy(user));
    for (let waited = 0; anysTo(sid) === 0 && waited < 500; waited += 10) await sleep(10);
    return anysTo(sid);
  }

  beforeEach(async () => {
    // A window of one: each user's one `send`, never acknowledged until the test does, fills it.
    t = await startBroker({ delivery: { max_inflight_per_user: 1, ack_timeout: 3600 } });
    t.link.online(0, 'sender-1', 'sender');
    for (const user of ['a', 'b']) {
      t.link.online(0, `${user}-1`, user);
      t.link.online(0, `${user}-2`, user);
      await stored('send', user);
      for (let g = 0; g < idle; g++) t.link.join(0, `${user}-1`, `idle.${g}`);
    }
    t.link.join(0, 'a-1', 'jobs');
    await stored('any', 'jobs');
    assert.equal(anysTo('a-1'), 0, 'the any waits: its one member has no room');
  });
  afterEach(() => t.close());

  test('a member that joined while the group was blocked gets it when its window frees', async () => {
    t.link.join(0, 'b-1', 'jobs');
    assert.equal(await anysAfterAck('b-1', 'b'), 1);
  });

  test('a user whose other connection left the blocked group still gets it through the one that stays', async () => {
    t.link.join(0, 'a-2', 'jobs');
    t.link.leave(0, 'a-1', 'jobs');
    assert.equal(await anysAfterAck('a-2', 'a'), 1);
  });

  test('a user that left the blocked group is not offered it, and is forgotten', async () => {
    t.link.join(0, 'b-1', 'jobs');
    t.link.leave(0, 'a-1', 'jobs');
    assert.equal((await anysAfterAck('a-1', 'a')) + anysTo('a-2'), 0);
    assert.equal(indexedGroups(t), idle > 0 ? 1 : 0, 'only b is held as a member of the blocked group');
    t.link.offline(0, 'b-1', 'b');
    assert.equal(indexedGroups(t), 0);
  });
});

import assert from 'node:assert/strict';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { msgsIn, startBroker, type RecordingLink, type TestBroker } from './helpers/broker.js';

/** The next message delivered to connection `sid` from call `from` on, once the broker has sent it, and where to look for the one after. */
async function deliveredTo(link: RecordingLink, sid: string, from: number): Promise<{ id: string; group: unknown; at: number }> {
  for (;;) {
    for (let at = from; at < link.calls.length; at++) {
      const call = link.calls[at]!;
      if (call.op === 'deliverToSid' && call.sid === sid) {
        const msg = msgsIn(call.frame)[0]!;
        return { id: msg.id as string, group: msg.group, at: at + 1 };
      }
    }
    await nextTurn();
  }
}

let refs = 0;

/** Stores an `any` to each of `groups`, 1,000 at a time (a flood, as a shard's ring brings it), and waits until every one is. */
async function anys(link: RecordingLink, groups: string[]): Promise<void> {
  for (let from = 0; from < groups.length; from += 1_000) {
    const sent = groups.slice(from, from + 1_000).map((group, n) => {
      const ref = `a${refs++}`;
      link.any(0, 'sender-1', 'sender', group, n, { ref });
      return ref;
    });
    for (const answer of await Promise.all(sent.map((ref) => link.answerTo(ref)))) assert.equal(answer.op, 'senderAck');
  }
}

/**
 * Blocks `count` groups behind `user`'s full window: its connections (1,000 groups each) join
 * `USER.CONNECTION.GROUP`, one message it never acknowledges fills its window (of one), and each
 * group gets an `any`.
 */
async function blockGroupsOf(link: RecordingLink, user: string, count: number): Promise<void> {
  const groups: string[] = [];
  for (let c = 0; c < count / 1_000; c++) {
    link.online(0, `${user}-${c}`, user);
    for (let g = 0; g < 1_000; g++) {
      link.join(0, `${user}-${c}`, `${user}.${c}.${g}`);
      groups.push(`${user}.${c}.${g}`);
    }
  }
  link.send(0, 'sender-1', 'sender', user, 'fills the window', { ref: `fill-${user}` });
  assert.equal((await link.answerTo(`fill-${user}`)).op, 'senderAck');
  await anys(link, groups);
}

/**
 * Acks by connection `sid` of `user` (in group `work`, which always has more), each of the one
 * `any` its window of one holds, each freeing it for the next; timed in blocks, the fastest
 * counting: a pause of the shared machine spoils one block, not the figure.
 */
class AckRounds {
  /** The delivery in flight, and where in the calls to look for the next. */
  private held = { id: '', at: 0 };

  constructor(
    private readonly link: RecordingLink,
    private readonly sid: string,
    private readonly user: string,
  ) {}

  /** Joins `work`, which gets `count` messages: one in the window, the rest blocked behind it. */
  async start(count: number): Promise<void> {
    this.link.join(0, this.sid, 'work');
    await anys(this.link, new Array<string>(count).fill('work'));
    this.held = await deliveredTo(this.link, this.sid, 0);
  }

  /** Milliseconds of `rounds` acks. */
  async run(rounds: number): Promise<number> {
    const start = performance.now();
    for (let r = 0; r < rounds; r++) {
      this.link.ack(0, this.sid, this.user, this.held.id);
      this.held = await deliveredTo(this.link, this.sid, this.held.at);
    }
    return performance.now() - start;
  }

  /** The fastest of `blocks` blocks of `rounds` acks, and all of them for the diagnostic. */
  async fastest(blocks: number, rounds: number): Promise<{ ms: number; all: string }> {
    const times: number[] = [];
    for (let b = 0; b < blocks; b++) times.push(await this.run(rounds));
    return { ms: Math.min(...times), all: times.map((ms) => ms.toFixed(1)).join(', ') };
  }
}

/** A broker with windows of one message, a sender, and connection w-1 of `worker`, in `work`, which gets `count` messages. */
async function startWorker(count: number): Promise<{ t: TestBroker; worker: AckRounds }> {
  // A window of one message: one delivery left unacknowledged blocks every group of its user.
  const t = await startBroker({ delivery: { max_inflight_per_user: 1, max_stored_per_sender: 100_000, ack_timeout: 3600 } });
  t.link.online(0, 'sender-1', 'sender');
  t.link.online(0, 'w-1', 'worker');
  const worker = new AckRounds(t.link, 'w-1', 'worker');
  await worker.start(count);
  return { t, worker };
}

/**
 * Groups whose `any` messages wait for a member's window are "blocked" (delivery.ts) and taken
 * in turns when a window frees. Each turn that freed a window copied the whole set of blocked
 * groups to find the freed ones in turn order: with 30,000 groups blocked behind full windows
 * (a busy deployment, or a hostile client leaving an `any` in each of many groups), every
 * single ack anywhere cost a copy of 30,000 entries. Now a turn orders only the groups it frees.
 */
describe('broker: an ack costs the same however many other groups are blocked', () => {
  let t: TestBroker;
  let worker: AckRounds;
  const CROWD = 30_000;
  const ROUNDS = 500;
  const BLOCKS = 5;

  before(async () => {
    ({ t, worker } = await startWorker(2 * ROUNDS + 60));
  });
  after(() => t.close());

  test(`${ROUNDS} acks with ${CROWD} other groups blocked cost about what they do with none`, async (context) => {
    await worker.run(50); // warm-up
    const alone = await worker.fastest(BLOCKS, ROUNDS / BLOCKS);
    await blockGroupsOf(t.link, 'crowd', CROWD);
    const blocked = (t.broker as unknown as { route: { blockedGroups: { size: number } } }).route.blockedGroups.size;
    assert.equal(blocked, CROWD + 1, 'every crowd group is blocked, and the worker\'s');

    const crowded = await worker.fastest(BLOCKS, ROUNDS / BLOCKS);
    const rounds = ROUNDS / BLOCKS;
    context.diagnostic(`blocks of ${rounds} acks: ${crowded.all} ms with ${CROWD} other groups blocked, ${alone.all} ms with none`);
    // Before: a copy of the 30,000 blocked groups at each ack's turn, about 2 ms each.
    assert.ok(crowded.ms < 2 * alone.ms + 15, `${rounds} acks took ${crowded.ms.toFixed(1)} ms with ${CROWD} other groups blocked, against ${alone.ms.toFixed(1)} ms with none`);
  });
});

/** A connection's groups that count the ones walked. */
class CountingGroups extends Set<string> {
  walked = 0;

  override *values(): SetIterator<string> {
    for (const group of super.values()) {
      this.walked++;
      yield group;
    }
  }

  override [Symbol.iterator](): SetIterator<string> {
    return this.values();
  }
}

/**
 * A freed window is offered to the blocked groups its user is a member of, and finding them
 * walked every group of every connection of the user: a user in 30,000 groups (30 connections
 * of 1,000), one of them blocked, paid a walk of 30,000 at each ack that freed its window. Now
 * the broker knows each user's blocked groups (presence.ts), and an ack costs what they are.
 */
describe('broker: an ack costs the same however many groups that are not blocked its user is in', () => {
  let t: TestBroker;
  let worker: AckRounds;
  const MEMBERSHIPS = 30_000;
  const ROUNDS = 100;

  before(async () => {
    ({ t, worker } = await startWorker(3 * ROUNDS));
  });
  after(() => t.close());

  test(`each ack of a user in ${MEMBERSHIPS} groups, one blocked, looks at no more groups than that one`, async (context) => {
    const presence = (t.broker as unknown as { presence: { connectionsOf(user: string): ReadonlyMap<string, { groups: Set<string> }> } }).presence;
    const route = (t.broker as unknown as { route: { blockedGroups: { has(group: string): boolean } } }).route;
    let blockedLookUps = 0;
    const has = route.blockedGroups.has.bind(route.blockedGroups);
    route.blockedGroups.has = (group) => {
      blockedLookUps++;
      return has(group);
    };
    await worker.run(20); // warm-up
    const alone = await worker.run(ROUNDS);
    for (let c = 0; c < MEMBERSHIPS / 1_000; c++) {
      t.link.online(0, `w-idle-${c}`, 'worker');
      for (let g = 0; g < 1_000; g++) t.link.join(0, `w-idle-${c}`, `idle.${c}.${g}`);
    }
    await worker.run(10); // the joins are in
    const counted: CountingGroups[] = [];
    for (const conn of presence.connectionsOf('worker').values()) counted.push((conn.groups = new CountingGroups(conn.groups)));
    blockedLookUps = 0;

    const member = await worker.run(ROUNDS);
    const walked = counted.reduce((sum, groups) => sum + groups.walked, 0);
    const perAck = (walked + blockedLookUps) / ROUNDS;
    context.diagnostic(`per ack: ${walked / ROUNDS} memberships walked, ${blockedLookUps / ROUNDS} blocked groups looked up; ${ROUNDS} acks took ${member.toFixed(1)} ms in ${MEMBERSHIPS} more groups, ${alone.toFixed(1)} ms in one`);
    // Before: each ack walked the user's 30,001 groups, looking each up among the blocked.
    assert.ok(perAck <= 1, `each ack looked at ${perAck} groups of a user in ${MEMBERSHIPS + 1}, one blocked`);
  });
});

/**
 * Only a freed window can take a blocked group's message, and each turn offered it to every
 * blocked group of its user, even once it was full again: each ack of a user in 30,000 blocked
 * groups (a client leaving an `any` in each of its own groups behind its full window) cost the
 * broker's thread 50-130 ms, a pick of a member for each group. Now the turn stops once the
 * windows it freed are full.
 */
describe('broker: an ack offers the window it frees to blocked groups only until it is full', () => {
  let t: TestBroker;
  const GROUPS = 3_000;
  let picks = 0;

  before(async () => {
    t = await startBroker({ delivery: { max_inflight_per_user: 1, ack_timeout: 3600 } });
    const presence = (t.broker as unknown as { route: { parts: { presence: { pick: (...args: unknown[]) => unknown } } } }).route.parts.presence;
    const pick = presence.pick.bind(presence);
    presence.pick = (...args) => {
      picks++;
      return pick(...args);
    };
    await blockGroupsOf(t.link, 'many', GROUPS);
  });
  after(() => t.close());

  test(`each ack of a user in ${GROUPS} blocked groups gives its slot to the group blocked longest, and looks at no other`, async (context) => {
    const fill = t.link.all('deliverToUser', (c) => c.user === 'many')[0]!;
    let held = { id: msgsIn(fill.frame)[0]!.id as string, at: t.link.calls.length };
    const perAck: number[] = [];
    for (let n = 0; n < 10; n++) {
      picks = 0;
      t.link.ack(0, 'many-0', 'many', held.id);
      const next = await deliveredTo(t.link, 'many-0', held.at);
      assert.equal(next.group, `many.0.${n}`, 'the groups take the slot in the order they were blocked');
      held = next;
      perAck.push(picks);
    }
    context.diagnostic(`members picked per ack: ${perAck.join(', ')}`);
    // Before: every blocked group of the user was looked at, 3,000 picks per ack.
    assert.ok(Math.max(...perAck) <= 2, `members picked per ack: ${perAck.join(', ')}`);
  });
});

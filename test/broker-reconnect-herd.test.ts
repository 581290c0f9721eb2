/**
 * Many users reconnecting at once (after a restart every user does) each take their window of
 * backlog, but the broker reads and encodes at most a turn's budget of backlogs in one turn,
 * all users together (src/broker/turn-budget.ts): the rest goes out in the following turns,
 * each user's in queue order. Until 2026-12-08, 100 users with 1,000 messages of 4 KB stored
 * each, reconnecting in one turn, held the broker 9.1 s (worst event-loop stall in this
 * harness; 0.3 s with the budget, mostly the harness's own garbage collection).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { msgsIn, sleep, startBroker, type TestBroker } from './helpers/broker.js';
import { until } from './helpers/messaging.js';

const USERS = 32;
const EACH = 500;

describe('broker: a herd of reconnects with backlogs', () => {
  let t: TestBroker;
  before(async () => {
    t = await startBroker({ delivery: { ack_timeout: 600 } });
  });
  after(() => t.close());

  /** The `n` of every message delivered to `user` so far (batches unpacked), oldest first. */
  const deliveredTo = (user: string): number[] =>
    t.link.calls.flatMap((c) => ((c.op === 'deliverToSid' && c.sid === `${user}-1`) || (c.op === 'deliverToUser' && c.user === user) ? msgsIn(c.frame).map((m) => (m.data as { n: number }).n) : []));

  test('one user reconnecting with a backlog within the budget gets all of it in the turn it came, as before', async () => {
    await Promise.all(Array.from({ length: 300 }, (_, n) => t.broker.send('solo', { n })));
    const before = t.broker.stats.delivered;
    t.link.online(0, 'solo-1', 'solo');
    assert.equal(t.broker.stats.delivered - before, 300);
  });

  test(`${USERS} users reconnecting in one turn with ${EACH} stored each: the turn delivers part of it, the next turns the rest, each user's in order, each message once`, async () => {
    const sends: Array<Promise<string>> = [];
    for (let n = 0; n < EACH; n++) for (let u = 0; u < USERS; u++) sends.push(t.broker.send(`herd${u}`, { n }));
    await Promise.all(sends);
    const before = t.broker.stats.delivered;
    // As one drain of the shards' rings reads them: in one turn.
    for (let u = 0; u < USERS; u++) t.link.online(u % 2, `herd${u}-1`, `herd${u}`);
    const inTheTurn = t.broker.stats.delivered - before;
    assert.ok(inTheTurn < USERS * EACH / 2, `${inTheTurn} of ${USERS * EACH} delivered in the turn the reconnects came`);
    await until(() => t.broker.stats.delivered - before >= USERS * EACH || undefined, 'every backlog delivered', 30_000);
    await sleep(100); // the last turn's frames are flushed at its end
    const expected = Array.from({ length: EACH }, (_, n) => n);
    for (let u = 0; u < USERS; u++) assert.deepEqual(deliveredTo(`herd${u}`), expected, `herd${u}`);
  });
});

describe('broker: stopping while backlogs go out', () => {
  test('a stop in the turn deliveries were queued (and while later turns owe more) reads nothing from the closed store', async () => {
    const t = await startBroker();
    await Promise.all(Array.from({ length: 4 * 2048 }, (_, n) => t.broker.send(`late${n % 4}`, { n })));
    for (let u = 0; u < 4; u++) t.link.online(0, `late${u}-1`, `late${u}`);
    // Before it: the flush queued for the end of the turn read a message's data from the closed
    // store, and lmdb-js threw from a setImmediate ("Can not renew a transaction from a closed database").
    await t.close();
    await sleep(100);
  });
});

describe('broker: members joining groups with `any` backlogs', () => {
  const GROUPS = 8;
  const EACH = 1_000;
  let t: TestBroker;
  before(async () => {
    t = await startBroker({ delivery: { ack_timeout: 600 } });
  });
  after(() => t.close());

  test(`a member joining ${GROUPS} groups with ${EACH} stored each in one turn: the turn delivers part, the next turns the rest, each group's in order, each once`, async () => {
    // Stored while the groups have no member: they wait for one.
    for (let n = 0; n < EACH; n++) for (let g = 0; g < GROUPS; g++) t.link.any(0, 'boss-1', 'boss', `team${g}`, { n });
    await until(() => t.broker.stats.stored >= GROUPS * EACH || undefined, 'all stored');
    await t.store.flushed();
    t.link.online(0, 'worker-1', 'worker');
    await t.link.next('welcome', (c) => c.sid === 'worker-1');
    const before = t.broker.stats.delivered;
    for (let g = 0; g < GROUPS; g++) t.link.join(0, 'worker-1', `team${g}`);
    const inTheTurn = t.broker.stats.delivered - before;
    assert.ok(inTheTurn < GROUPS * EACH / 2, `${inTheTurn} of ${GROUPS * EACH} delivered in the turn the joins came`);
    await until(() => t.broker.stats.delivered - before >= GROUPS * EACH || undefined, 'every group backlog delivered', 30_000);
    await sleep(100);
    const got = t.link.calls.flatMap((c) => (c.op === 'deliverToSid' && c.sid === 'worker-1' ? msgsIn(c.frame) : []));
    for (let g = 0; g < GROUPS; g++) {
      assert.deepEqual(got.filter((m) => m.group === `team${g}`).map((m) => (m.data as { n: number }).n), Array.from({ length: EACH }, (_, n) => n), `team${g}`);
    }
  });
});

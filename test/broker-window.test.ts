/**
 * A user's deliveries awaiting its ack are bounded (delivery.max_inflight_per_user and
 * max_inflight_bytes_per_user): a large backlog goes out at the pace the user acknowledges it,
 * in order, instead of all at once at every reconnect. And one sender's stored bytes are
 * bounded (delivery.max_stored_bytes_per_sender), so it cannot fill the store for everyone.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { msgsIn, sleep, startBroker, type TestBroker } from './helpers/broker.js';
import { until } from './helpers/messaging.js';

describe('broker: the window of deliveries awaiting a user\'s ack', () => {
  let t: TestBroker;
  before(async () => {
    t = await startBroker({ delivery: { max_inflight_per_user: 4, max_inflight_bytes_per_user: 1000 } });
  });
  after(() => t.close());

  /** Every message delivered to connection `sid` so far (batches unpacked), oldest first. */
  const deliveredTo = (sid: string): Array<{ id: string; n: number }> =>
    t.link.calls.flatMap((c) => (c.op === 'deliverToSid' && c.sid === sid) || (c.op === 'deliverToUser' && c.user === sid.split('-')[0]) ? msgsIn(c.frame).map((m) => ({ id: m.id as string, n: (m.data as { n: number }).n })) : []);

  test('a backlog of 10 goes out 4 at a time, each next one as an ack frees the window, in order; a new message waits behind it', async () => {
    for (let n = 0; n < 10; n++) {
      t.link.send(0, 'alice-1', 'alice', 'bob', { n }, { ref: `s${n}` });
      await t.link.answerTo(`s${n}`);
    }
    t.link.online(1, 'bob-1', 'bob');
    await t.link.next('welcome', (c) => c.sid === 'bob-1');
    await sleep(50);
    assert.deepEqual(deliveredTo('bob-1').map((m) => m.n), [0, 1, 2, 3], 'the window: 4 of 10');
    t.link.send(0, 'alice-1', 'alice', 'bob', { n: 10 }, { ref: 's10' });
    await t.link.answerTo('s10');
    await sleep(50);
    assert.deepEqual(deliveredTo('bob-1').map((m) => m.n), [0, 1, 2, 3], 'the new one waits its turn');
    // Acknowledging as they come: the rest follow, in order, each once.
    for (let acked = 0; acked < 11; acked++) {
      const next = await until(() => deliveredTo('bob-1')[acked], `delivery ${acked}`);
      t.link.ack(1, 'bob-1', 'bob', next.id);
    }
    assert.deepEqual(deliveredTo('bob-1').map((m) => m.n), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.equal(t.broker.depth().stored, 0);
  });

  test('the window counts bytes too, and a message larger than it still goes, alone', async () => {
    for (let n = 0; n < 3; n++) {
      t.link.send(0, 'alice-1', 'alice', 'carol', { n, pad: 'x'.repeat(600) }, { ref: `c${n}` });
      await t.link.answerTo(`c${n}`);
    }
    t.link.online(1, 'carol-1', 'carol');
    await t.link.next('welcome', (c) => c.sid === 'carol-1');
    await sleep(50);
    assert.deepEqual(deliveredTo('carol-1').map((m) => m.n), [0], '~620 bytes each: one fits 1000, two do not');
    t.link.ack(1, 'carol-1', 'carol', deliveredTo('carol-1')[0]!.id);
    await sleep(50);
    assert.deepEqual(deliveredTo('carol-1').map((m) => m.n), [0, 1]);
  });

  test('a reconnect re-sends what is in flight, not the whole backlog', async () => {
    for (let n = 0; n < 8; n++) {
      t.link.send(0, 'alice-1', 'alice', 'dave', { n }, { ref: `d${n}` });
      await t.link.answerTo(`d${n}`);
    }
    t.link.online(1, 'dave-1', 'dave');
    await t.link.next('welcome', (c) => c.sid === 'dave-1');
    t.link.offline(1, 'dave-1', 'dave');
    t.link.online(1, 'dave-2', 'dave');
    const welcome = await t.link.next('welcome', (c) => c.sid === 'dave-2');
    assert.equal(welcome.op === 'welcome' && welcome.pending, 8, 'pending counts the whole backlog');
    await sleep(50);
    assert.deepEqual(deliveredTo('dave-2').map((m) => m.n), [0, 1, 2, 3]);
  });
});

describe('broker: the window counts `any` deliveries too, and frees with them', () => {
  let t: TestBroker;
  before(async () => {
    t = await startBroker({ delivery: { max_inflight_per_user: 1 } });
  });
  after(() => t.close());

  test('a direct message waiting behind an `any` task goes out once the task is acknowledged', async () => {
    t.link.online(1, 'bob-1', 'bob');
    await t.link.next('welcome', (c) => c.sid === 'bob-1');
    t.link.join(1, 'bob-1', 'workers');
    t.link.any(0, 'boss-1', 'boss', 'workers', { task: 1 }, { ref: 'a' });
    await t.link.answerTo('a');
    const task = await t.link.next('deliverToSid', (c) => c.sid === 'bob-1');
    t.link.send(0, 'alice-1', 'alice', 'bob', { direct: 1 }, { ref: 'd' });
    await t.link.answerTo('d');
    await sleep(50);
    assert.equal(t.link.calls.filter((c) => c.op === 'deliverToUser' && c.user === 'bob').length, 0, 'the window (1) holds the task');
    t.link.ack(1, 'bob-1', 'bob', msgsIn(task.frame)[0]!.id as string);
    const direct = await t.link.next('deliverToUser', (c) => c.user === 'bob');
    assert.deepEqual(msgsIn(direct.frame).map((m) => m.data), [{ direct: 1 }]);
  });
});

describe('broker: `any` deliveries go only to members whose window has room', () => {
  let t: TestBroker;
  before(async () => {
    t = await startBroker({ delivery: { max_inflight_per_user: 2, max_inflight_bytes_per_user: 100_000 } });
  });
  after(() => t.close());

  const tasksTo = (sid: string): number[] =>
    t.link.calls.flatMap((c) => (c.op === 'deliverToSid' && c.sid === sid ? msgsIn(c.frame).map((m) => (m.data as { task: number }).task) : []));
  const idsTo = (sid: string): string[] => t.link.calls.flatMap((c) => (c.op === 'deliverToSid' && c.sid === sid ? msgsIn(c.frame).map((m) => m.id as string) : []));

  test('a member joining a group with a backlog gets one window of it, the rest in order as it acknowledges', async () => {
    for (let task = 0; task < 6; task++) {
      t.link.any(0, 'boss-1', 'boss', 'backlog', { task }, { ref: `b${task}` });
      await t.link.answerTo(`b${task}`);
    }
    t.link.online(1, 'worker-1', 'worker');
    await t.link.next('welcome', (c) => c.sid === 'worker-1');
    t.link.join(1, 'worker-1', 'backlog');
    await sleep(50);
    assert.deepEqual(tasksTo('worker-1'), [0, 1], 'one window (2) of the six');
    t.link.any(0, 'boss-1', 'boss', 'backlog', { task: 6 }, { ref: 'b6' });
    await t.link.answerTo('b6');
    await sleep(50);
    assert.deepEqual(tasksTo('worker-1'), [0, 1], 'a new task waits behind the backlog');
    for (let acked = 0; acked < 7; acked++) {
      const id = await until(() => idsTo('worker-1')[acked], `task ${acked}`);
      t.link.ack(1, 'worker-1', 'worker', id);
    }
    assert.deepEqual(tasksTo('worker-1'), [0, 1, 2, 3, 4, 5, 6], 'each once, in order');
    await until(() => t.broker.depth().stored === 0 || undefined, 'all acknowledged');
  });

  test('a member whose window is full is passed over for one with room, whatever the strategy', async () => {
    for (const strategy of ['round_robin', 'least_connections', 'weighted']) {
      const group = `full-${strategy}`;
      t.link.online(1, `busy-${strategy}`, `busy-${strategy}`);
      t.link.online(1, `free-${strategy}`, `free-${strategy}`);
      t.link.join(1, `busy-${strategy}`, group, 1000);
      t.link.join(1, `free-${strategy}`, group, 1);
      // Fill the busy member's window with direct messages it does not acknowledge.
      for (let n = 0; n < 2; n++) {
        t.link.send(0, 'boss-1', 'boss', `busy-${strategy}`, { n }, { ref: `${strategy}-d${n}` });
        await t.link.answerTo(`${strategy}-d${n}`);
      }
      for (let task = 0; task < 2; task++) {
        t.link.any(0, 'boss-1', 'boss', group, { task }, { ref: `${strategy}-a${task}`, strategy });
        await t.link.answerTo(`${strategy}-a${task}`);
      }
      await sleep(50);
      assert.deepEqual(tasksTo(`busy-${strategy}`), [], `${strategy}: nothing to the full window`);
      assert.deepEqual(tasksTo(`free-${strategy}`), [0, 1], `${strategy}: both to the member with room`);
    }
  });

  test('round_robin passes over a member with a full window without giving its turns to one other member', async () => {
    for (const user of ['rr-full', 'rr-a', 'rr-b']) {
      t.link.online(1, `${user}-1`, user);
      t.link.join(1, `${user}-1`, 'rr');
    }
    for (let n = 0; n < 2; n++) {
      t.link.send(0, 'boss-1', 'boss', 'rr-full', { n }, { ref: `rr-d${n}` });
      await t.link.answerTo(`rr-d${n}`);
    }
    for (let task = 0; task < 40; task++) {
      t.link.any(0, 'boss-1', 'boss', 'rr', { task }, { ref: `rr-${task}`, strategy: 'round_robin' });
      await t.link.answerTo(`rr-${task}`);
      // Each acknowledges at once, so that only rr-full's window stays full.
      for (const user of ['rr-a', 'rr-b']) for (const id of idsTo(`${user}-1`)) t.link.ack(1, `${user}-1`, user, id);
      await sleep(2);
    }
    const a = tasksTo('rr-a-1').length;
    const b = tasksTo('rr-b-1').length;
    assert.equal(tasksTo('rr-full-1').length, 0);
    assert.equal(a + b, 40);
    assert.ok(Math.abs(a - b) <= 2, `shared evenly: ${a} and ${b}`);
  });
});

describe('broker: a connection that comes while a message to its user is on its way', () => {
  test('gets it once: from the delivery to all of the user\'s connections, not again as in flight', async () => {
    const t = await startBroker();
    try {
      t.link.online(0, 'bob-1', 'bob');
      await t.link.next('welcome', (c) => c.sid === 'bob-1');
      // In one turn of the broker: a send to bob, then bob's second connection on the same shard.
      t.link.send(0, 'alice-1', 'alice', 'bob', 'x', { ref: 'x' });
      t.link.online(0, 'bob-2', 'bob');
      const { id } = (await t.link.answerTo('x')) as { id: string };
      await sleep(50);
      const toUser = t.link.all('deliverToUser', (c) => c.user === 'bob' && msgsIn(c.frame).some((m) => m.id === id));
      const toSid = t.link.all('deliverToSid', (c) => c.sid === 'bob-2' && msgsIn(c.frame).some((m) => m.id === id));
      assert.equal(toUser.length, 1, 'to every connection of bob on the shard, the new one included (welcomed before that flush)');
      assert.equal(toSid.length, 0, 'not again to the new connection');
    } finally {
      await t.close();
    }
  });
});

describe('broker: a take-over delivers what it loads in queue order', () => {
  test("a connected user's first window is its highest priority messages, not its oldest", async () => {
    const t = await startBroker({ standBy: true, delivery: { max_inflight_per_user: 2 } });
    try {
      t.link.online(0, 'bob-1', 'bob');
      await t.link.next('welcome', (c) => c.sid === 'bob-1');
      // What the process that held the store had stored for bob: three old LOW messages, then a CRITICAL one.
      const stored = [0, 0, 0, 3].map((pri, n) => ({ id: `held-${n}`, seq: 1000 + n, target: 'u:bob', from: 'alice', group: null, data: JSON.stringify({ n, pri }), pri, ts: Date.now() - 60_000 + n, at: 0, attempts: 0, strategy: null }));
      for (const m of stored) assert.ok(await t.store.put(m));
      assert.equal(t.broker.takeOver(), 4);
      await sleep(50);
      const delivered = t.link.all('deliverToUser', (c) => c.user === 'bob').flatMap((c) => msgsIn(c.frame).map((m) => m.id as string));
      assert.deepEqual(delivered, ['held-3', 'held-0'], 'the CRITICAL one first, then the oldest LOW: one window of 2');
    } finally {
      await t.close();
    }
  });
});

// With many other groups blocked, a turn sorts the few it frees instead of walking them all (delivery.ts): both keep the turns.
for (const others of [0, 100]) {
  describe(`broker: groups that share a member with a full window take turns (${others} other groups blocked)`, () => {
    let t: TestBroker;
    before(async () => {
      t = await startBroker({ delivery: { max_inflight_per_user: 1 } });
      if (others === 0) return;
      // Another member whose window one unacknowledged message fills, with an any waiting in each of its groups.
      t.link.online(0, 'o-1', 'o');
      t.link.send(0, 'p-1', 'p', 'o', 'fills the window');
      for (let g = 0; g < others; g++) {
        t.link.join(0, 'o-1', `other.${g}`);
        t.link.any(0, 'p-1', 'p', `other.${g}`, { g });
      }
      await sleep(50);
      assert.equal(t.link.all('deliverToSid', (c) => c.sid === 'o-1').length, 0, 'the other groups are blocked');
    });
    after(() => t.close());

    test('a group that always has more waiting does not take every slot the member frees from another group', async () => {
      const got: Array<{ id: string; group: string }> = [];
      t.link.online(0, 'w-1', 'w');
      t.link.join(0, 'w-1', 'busy');
      t.link.join(0, 'w-1', 'quiet');
      let n = 0;
      for (; n < 5; n++) t.link.any(0, 'p-1', 'p', 'busy', { n });
      await sleep(50);
      t.link.any(0, 'p-1', 'p', 'quiet', { n: -1 });
      await sleep(50);
      const delivered = () => t.link.all('deliverToSid', (c) => c.sid === 'w-1').flatMap((c) => msgsIn(c.frame).map((m) => ({ id: m.id as string, group: m.group as string })));
      // The member acknowledges each task, and each ack brings busy one more.
      for (let k = 0; k < 10; k++) {
        const next = await until(() => delivered()[k], `delivery ${k}`);
        got.push(next);
        t.link.ack(0, 'w-1', 'w', next.id);
        t.link.any(0, 'p-1', 'p', 'busy', { n: n++ });
        await sleep(5);
      }
      assert.ok(got.slice(0, 4).some((m) => m.group === 'quiet'), `quiet's task among the first deliveries: ${got.map((m) => m.group).join(',')}`);
    });
  });
}

describe('broker: the bytes one sender may have stored (delivery.max_stored_bytes_per_sender)', () => {
  let t: TestBroker;
  before(async () => {
    t = await startBroker({ delivery: { max_stored_bytes_per_sender: 1024 } });
  });
  after(() => t.close());

  test('past it the next send gets E_QUEUE_FULL naming the limit; another sender may still send, and an ack gives the room back', async () => {
    t.link.send(0, 'hog-1', 'hog', 'nobody', 'x'.repeat(900), { ref: 'h0' });
    assert.equal((await t.link.answerTo('h0')).op, 'senderAck');
    t.link.send(0, 'hog-1', 'hog', 'nobody', 'x'.repeat(200), { ref: 'h1' });
    const refused = await t.link.answerTo('h1');
    assert.equal(refused.op === 'error' && refused.code, 'E_QUEUE_FULL');
    assert.match(refused.op === 'error' ? refused.message : '', /hog has 902 bytes of stored messages; this one has 202 \(delivery\.max_stored_bytes_per_sender\)/);
    t.link.send(0, 'other-1', 'other', 'nobody', 'x'.repeat(900), { ref: 'o0' });
    assert.equal((await t.link.answerTo('o0')).op, 'senderAck');
    t.link.online(1, 'nobody-1', 'nobody');
    const delivered = await t.link.next('deliverToSid', (c) => c.sid === 'nobody-1');
    for (const m of msgsIn(delivered.frame)) t.link.ack(1, 'nobody-1', 'nobody', m.id as string);
    await sleep(20);
    t.link.send(0, 'hog-1', 'hog', 'nobody', 'x'.repeat(200), { ref: 'h2' });
    assert.equal((await t.link.answerTo('h2')).op, 'senderAck');
  });
});

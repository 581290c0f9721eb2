/**
 * Routing by interest inside a process: a pub crosses to another shard only when that shard
 * has members of its group, and a member is never missed for it (src/shared/interest-table.ts).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RunningServer } from '../src/index.js';
import { createInterestTable, INTEREST_BUCKETS, interestBucket, InterestTable } from '../src/shared/interest-table.js';
import { Counter } from '../src/shared/shard-counters.js';
import { member, onShard, type Frame, type TestClient } from './helpers/client.js';
import { startInProcess } from './helpers/server.js';

type Member = TestClient & { welcome: Frame };

describe('the interest table', () => {
  test('counts memberships per shard and bucket; a group is there until its last member leaves', () => {
    const table = new InterestTable(createInterestTable(2));
    const b = interestBucket('room');
    table.joined(1, 'room');
    table.joined(1, 'room');
    assert.equal(table.has(1, b), true);
    assert.equal(table.has(0, b), false);
    table.left(1, 'room');
    assert.equal(table.has(1, b), true);
    table.left(1, 'room');
    assert.equal(table.has(1, b), false);
  });

  test('two groups in one bucket: the one that stays is still seen (a collision costs a forward, never a member)', () => {
    const table = new InterestTable(createInterestTable(1));
    const first = 'g0';
    const bucket = interestBucket(first);
    let other = '';
    for (let i = 1; other === ''; i++) if (interestBucket(`g${i}`) === bucket) other = `g${i}`;
    table.joined(0, first);
    table.joined(0, other);
    table.left(0, first);
    assert.equal(table.has(0, interestBucket(other)), true);
  });

  test('hostile names hash like any other, within the table', () => {
    for (const name of ['__proto__', 'constructor', 'x'.repeat(128), '']) {
      const b = interestBucket(name);
      assert.ok(Number.isInteger(b) && b >= 0 && b < INTEREST_BUCKETS);
    }
  });

  test('clear() forgets one shard and leaves the others', () => {
    const table = new InterestTable(createInterestTable(2));
    table.joined(0, 'a');
    table.joined(1, 'a');
    table.clear(1);
    assert.equal(table.has(0, interestBucket('a')), true);
    assert.equal(table.has(1, interestBucket('a')), false);
  });
});

describe('routing by interest between two shards', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { groups: { require_membership: false } } });
  });
  after(() => server.close());

  const forwardedBy = (shard: number): number => server.table.countersOf(shard)[Counter.ring_forwarded]!;
  const on = (shard: number, user: string, groups: string[] = []): Promise<Member> =>
    onShard(shard, (attempt) => member(server.port, `${user}-${attempt}`, groups));
  /** A round trip through the shard: frames it handled before are done. */
  const settle = async (client: TestClient): Promise<void> => {
    client.send({ op: 'ping', t: 0 });
    await client.next((f) => f.op === 'pong');
  };

  test('a pub to a group whose members all share the publisher\'s shard crosses no ring', async () => {
    const publisher = await on(0, 'local-pub', ['local-room']);
    const neighbour = await on(0, 'local-member', ['local-room']);
    const elsewhere = await on(1, 'other-member', ['other-room']);
    const before = forwardedBy(0);
    for (let i = 0; i < 20; i++) publisher.send({ op: 'pub', group: 'local-room', data: { i }, ref: `p${i}` });
    for (let i = 0; i < 20; i++) await neighbour.next((f) => f.op === 'msg' && (f.data as { i: number }).i === i);
    assert.equal(forwardedBy(0) - before, 0);
    await settle(elsewhere);
    assert.equal(elsewhere.frames.filter((f) => f.op === 'msg').length, 0);
    for (const c of [publisher, neighbour, elsewhere]) c.close();
  });

  test('a member that joined on the other shard gets every pub sent after its joined, and is forwarded to once per pub', async () => {
    const publisher = await on(0, 'race-pub');
    const listener = await on(1, 'race-member');
    for (let round = 0; round < 40; round++) {
      const group = `race-${round}`;
      listener.send({ op: 'join', group, ref: `j${round}` });
      await listener.next((f) => f.op === 'joined' && f.group === group);
      const before = forwardedBy(0);
      publisher.send({ op: 'pub', group, data: { round } });
      const msg = await listener.next((f) => f.op === 'msg', 3000);
      assert.deepEqual(msg.data, { round });
      // The publishing shard counts right after the ring write: the message can be faster.
      for (let i = 0; i < 50 && forwardedBy(0) === before; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(forwardedBy(0) - before, 1);
    }
    publisher.close();
    listener.close();
  });

  test('joining and leaving while a publisher streams: every pub sent after a joined arrives', async () => {
    const publisher = await on(0, 'stream-pub');
    const listener = await on(1, 'stream-member');
    let seq = 0;
    const stream = setInterval(() => {
      for (let i = 0; i < 5; i++) publisher.send({ op: 'pub', group: 'stream', data: { seq: seq++ } });
    }, 1);
    try {
      for (let round = 0; round < 15; round++) {
        listener.send({ op: 'join', group: 'stream', ref: `j${round}` });
        await listener.next((f) => f.op === 'joined', 3000);
        const firstAfterJoined = seq; // sent after the test saw `joined`
        await new Promise((resolve) => setTimeout(resolve, 15));
        // One publisher's pubs arrive in order: once a later one is here, every earlier one that will come is here.
        const last = seq - 1;
        await listener.next((f) => f.op === 'msg' && (f.data as { seq: number }).seq > last, 3000);
        const got = new Set(listener.frames.filter((f) => f.op === 'msg').map((f) => (f.data as { seq: number }).seq));
        listener.send({ op: 'leave', group: 'stream', ref: `l${round}` });
        await listener.next((f) => f.op === 'left', 3000);
        listener.frames.length = 0;
        for (let s = firstAfterJoined; s <= last; s++) assert.ok(got.has(s), `round ${round}: pub ${s} (sent after joined) missing`);
      }
    } finally {
      clearInterval(stream);
    }
    publisher.close();
    listener.close();
  });

  test('once the last member on the other shard leaves or closes, pubs stop crossing', async () => {
    const publisher = await on(0, 'gone-pub');
    const leaver = await on(1, 'gone-leaver', ['gone']);
    const closer = await on(1, 'gone-closer', ['gone']);
    let before = forwardedBy(0);
    publisher.send({ op: 'pub', group: 'gone', data: { n: 1 } });
    await leaver.next((f) => f.op === 'msg');
    await closer.next((f) => f.op === 'msg');
    for (let i = 0; i < 50 && forwardedBy(0) === before; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(forwardedBy(0) - before, 1);
    leaver.send({ op: 'leave', group: 'gone', ref: 'l' });
    await leaver.next((f) => f.op === 'left');
    closer.close();
    await closer.closed;
    // The shard counts the close in its close handler: wait until it ran.
    for (let i = 0; i < 100 && server.table.snapshot(1).connections > 1; i++) await new Promise((r) => setTimeout(r, 20));
    before = forwardedBy(0);
    publisher.send({ op: 'pub', group: 'gone', data: { n: 2 }, ref: 'after' });
    await publisher.next((f) => f.op === 'ack');
    assert.equal(forwardedBy(0) - before, 0);
    publisher.close();
    leaver.close();
  });

  test('a restarted shard starts with no interest: what its predecessor\'s members joined is forgotten', async () => {
    const publisher = await on(0, 'crash-pub');
    const doomed = await on(1, 'crash-member', ['crash-room']);
    const restarts = server.table.snapshot(1).restarts;
    server.injectShardCrash(1);
    await doomed.closed;
    await server.whenRestarted(1, restarts + 1);
    const before = forwardedBy(0);
    publisher.send({ op: 'pub', group: 'crash-room', data: {}, ref: 'x' });
    await publisher.next((f) => f.op === 'ack');
    assert.equal(forwardedBy(0) - before, 0);
    publisher.close();
  });
});

describe('routing by interest and history groups', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { groups: { require_membership: false }, history: [{ pattern: 'hist.*', size: 10_000 }] } });
  });
  after(() => server.close());

  test('the only member on its shard, joining and recovering while a publisher streams: offsets follow the top with no gap and none twice', async () => {
    const publisher = await onShard(0, (attempt) => member(server.port, `hist-pub-${attempt}`));
    const listener = await onShard(1, (attempt) => member(server.port, `hist-member-${attempt}`));
    const stream = setInterval(() => {
      for (let i = 0; i < 3; i++) publisher.send({ op: 'pub', group: 'hist.ir', data: 'x' });
    }, 2);
    /** Offsets of the next msgs (batches unpacked) until one past `until` arrived. */
    const offsetsUpTo = async (until: number): Promise<number[]> => {
      const seen: number[] = [];
      while (seen.length === 0 || seen.at(-1)! < until) {
        const frame = await listener.next((f) => f.op === 'msg' || f.op === 'batch', 5000);
        for (const m of frame.op === 'batch' ? (frame.msgs as Frame[]) : [frame]) seen.push(m.offset as number);
      }
      return seen;
    };
    try {
      let since: { offset: number; epoch: string } | null = null;
      for (let round = 0; round < 12; round++) {
        listener.send({ op: 'join', group: 'hist.ir', ref: `j${round}`, ...(since && { since }) });
        // With `since`, the replay comes before `joined`: it is read with what follows.
        const joined = await listener.next((f) => f.op === 'joined', 5000);
        if (since !== null) assert.equal(joined.recovered, true, `round ${round}: recovered`);
        const top = joined.offset as number;
        const offsets = await offsetsUpTo(top + 20);
        const from: number = since === null ? top + 1 : since.offset + 1;
        assert.deepEqual(offsets, Array.from({ length: offsets.length }, (_, i) => from + i), `round ${round}: consecutive from ${from}`);
        listener.send({ op: 'leave', group: 'hist.ir', ref: `l${round}` });
        await listener.next((f) => f.op === 'left', 5000);
        // What came between the last offset read and `left` is dropped: the next join recovers from the last one read.
        listener.frames.length = 0;
        since = { offset: offsets.at(-1)!, epoch: joined.epoch as string };
      }
    } finally {
      clearInterval(stream);
    }
    publisher.close();
    listener.close();
  });
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig } from '../src/config/load.js';
import { msgsIn, sleep, startBroker, type TestBroker } from './helpers/broker.js';

const RULES = [
  { pattern: 'room.*', size: 1000, ttl: 0 },
  { pattern: 'small.*', size: 3, ttl: 0 },
  { pattern: 'short.*', size: 100, ttl: 1 },
  { pattern: '__proto__', size: 10, ttl: 0 },
];

/** A connection `sid` of `user` on shard 0, a member of `group`. */
function online(b: TestBroker, sid: string, user: string, group: string): void {
  b.link.online(0, sid, user);
  b.link.join(0, sid, group);
}

/** Publishes `count` messages to `group` as a shard would; resolves with the frames the broker published. */
async function publish(b: TestBroker, group: string, count: number, from = 'alice'): Promise<Array<Record<string, unknown>>> {
  const before = b.link.all('groupPub', (c) => c.group === group).length;
  for (let i = 0; i < count; i++) b.link.historyPub(0, 's-pub', from, group, { n: i }, `r${i}`);
  const pubs = b.link.all('groupPub', (c) => c.group === group).slice(before);
  assert.equal(pubs.length, count);
  return pubs.map((p) => JSON.parse(p.frame) as Record<string, unknown>);
}

async function joined(b: TestBroker, sid: string, group: string, since?: { offset: number; epoch: string }) {
  const ref = `j${Math.random()}`;
  b.link.groupJoin(0, sid, group, ref, since);
  return b.link.next('groupJoined', (c) => c.ref === ref);
}

describe('group history in the broker', () => {
  test('the config names a bad websocket.history rule or history key', () => {
    const load = (overrides: Record<string, unknown>) => () => loadConfig({ env: {}, overrides });
    assert.throws(load({ websocket: { history: [{ pattern: 'room*x', size: 10 }] } }), /websocket\.history\.0\.pattern: a group name or a prefix\* pattern/);
    assert.throws(load({ websocket: { history: [{ pattern: 'room.*', size: 0 }] } }), /websocket\.history\.0\.size/);
    assert.throws(load({ websocket: { history: [{ pattern: 'room.*', size: 10, tll: 5 }] } }), /unknown key websocket\.history\.0\.tll/);
    assert.throws(load({ websocket: { history: { pattern: 'room.*' } } }), /websocket\.history: Expected array/);
    assert.throws(load({ history: { persists: true } }), /unknown key history\.persists/);
    assert.throws(load({ websocket: { presence: { window: 11 } } }), /websocket\.presence\.window/);
    const { config } = loadConfig({ env: {}, overrides: { websocket: { history: [{ pattern: 'room.*', size: 10 }] } } });
    assert.deepEqual(config.websocket.history, [{ pattern: 'room.*', size: 10, ttl: 0 }]);
  });

  test('every message of a history group gets the next offset and the group epoch, its sender the offset in its ack', async () => {
    const b = await startBroker({ historyRules: RULES });
    try {
      const msgs = await publish(b, 'room.a', 5);
      assert.deepEqual(msgs.map((m) => m.offset), [1, 2, 3, 4, 5]);
      const epoch = msgs[0]!.epoch as string;
      assert.match(epoch, /^[0-9a-f]{16}$/);
      assert.ok(msgs.every((m) => m.epoch === epoch && m.op === 'msg' && m.group === 'room.a'));
      const acks = b.link.all('senderAck', (c) => c.ref?.startsWith('r') ?? false);
      assert.deepEqual(acks.map((a) => a.offset), [1, 2, 3, 4, 5]);
      // Another group has its own offsets and epoch; a group without history none at all.
      const other = await publish(b, 'room.b', 1);
      assert.equal(other[0]!.offset, 1);
      assert.notEqual(other[0]!.epoch, epoch);
      const plain = await publish(b, 'lobby', 1);
      assert.equal(plain[0]!.offset, undefined);
      assert.equal(plain[0]!.epoch, undefined);
    } finally {
      await b.close();
    }
  });

  test('a join answers the top and epoch; with since, the replay of what came after it, then recovered: true', async () => {
    const b = await startBroker({ historyRules: RULES, performance: { batch_size: 4 } });
    try {
      online(b, 's1', 'bob', 'room.a');
      const fresh = await joined(b, 's1', 'room.a');
      assert.equal(fresh.top, 0);
      assert.equal(fresh.recovered, -1);
      const msgs = await publish(b, 'room.a', 10);
      const epoch = msgs[0]!.epoch as string;
      const back = await joined(b, 's1', 'room.a', { offset: 3, epoch });
      assert.equal(back.top, 10);
      assert.equal(back.epoch, epoch);
      assert.equal(back.recovered, 1);
      // Batches of batch_size, oldest first: offsets 4..10.
      assert.deepEqual(back.replay.map((f) => msgsIn(f).length), [4, 3]);
      assert.deepEqual(back.replay.flatMap((f) => msgsIn(f).map((m) => m.offset)), [4, 5, 6, 7, 8, 9, 10]);
      const upToDate = await joined(b, 's1', 'room.a', { offset: 10, epoch });
      assert.equal(upToDate.recovered, 1);
      assert.deepEqual(upToDate.replay, []);
      const one = await joined(b, 's1', 'room.a', { offset: 9, epoch });
      assert.deepEqual(one.replay.map((f) => JSON.parse(f).offset), [10]);
    } finally {
      await b.close();
    }
  });

  test('since of another epoch, or older than what is kept, is recovered: false; past the top is refused', async () => {
    const b = await startBroker({ historyRules: RULES });
    try {
      online(b, 's1', 'bob', 'small.a');
      const msgs = await publish(b, 'small.a', 5);
      const epoch = msgs[0]!.epoch as string;
      const otherEpoch = await joined(b, 's1', 'small.a', { offset: 4, epoch: 'not-this-one' });
      assert.equal(otherEpoch.recovered, 0);
      assert.equal(otherEpoch.top, 5);
      assert.equal(otherEpoch.epoch, epoch);
      // size 3 keeps 3..5: after 1 (2 is gone) cannot be recovered, after 2 can.
      assert.equal((await joined(b, 's1', 'small.a', { offset: 1, epoch })).recovered, 0);
      const fromTwo = await joined(b, 's1', 'small.a', { offset: 2, epoch });
      assert.equal(fromTwo.recovered, 1);
      assert.deepEqual(fromTwo.replay.flatMap((f) => msgsIn(f).map((m) => m.offset)), [3, 4, 5]);
      b.link.groupJoin(0, 's1', 'small.a', 'past', { offset: 6, epoch });
      const refused = await b.link.next('groupJoinFailed', (c) => c.ref === 'past');
      assert.match(refused.message, /past the group's last offset 5/);
    } finally {
      await b.close();
    }
  });

  test('history pages through the kept messages: since, limit, more, max_page; past the top is E_BAD_FRAME', async () => {
    const b = await startBroker({ historyRules: RULES, history: { max_page: 4 } });
    try {
      await publish(b, 'room.p', 10);
      b.link.history(0, 's1', 'room.p', 'h1', 0, 3);
      const first = JSON.parse((await b.link.next('reply', (c) => c.frame.includes('"ref":"h1"'))).frame) as Record<string, unknown>;
      assert.equal(first.op, 'history');
      assert.deepEqual((first.msgs as Array<Record<string, unknown>>).map((m) => m.offset), [1, 2, 3]);
      assert.equal(first.offset, 10);
      assert.equal(first.more, true);
      b.link.history(0, 's1', 'room.p', 'h2', 3, 1000);
      const capped = JSON.parse((await b.link.next('reply', (c) => c.frame.includes('"ref":"h2"'))).frame) as Record<string, unknown>;
      assert.deepEqual((capped.msgs as Array<Record<string, unknown>>).map((m) => m.offset), [4, 5, 6, 7]);
      assert.equal(capped.more, true);
      b.link.history(0, 's1', 'room.p', 'h3', 8);
      const last = JSON.parse((await b.link.next('reply', (c) => c.frame.includes('"ref":"h3"'))).frame) as Record<string, unknown>;
      assert.deepEqual((last.msgs as Array<Record<string, unknown>>).map((m) => m.offset), [9, 10]);
      assert.equal(last.more, false);
      b.link.history(0, 's1', 'room.p', 'h4', 11);
      const refused = await b.link.next('error', (c) => c.ref === 'h4');
      assert.equal(refused.code, 'E_BAD_FRAME');
    } finally {
      await b.close();
    }
  });

  test('messages older than their ttl are dropped', async () => {
    const b = await startBroker({ historyRules: RULES });
    try {
      const msgs = await publish(b, 'short.a', 3);
      const epoch = msgs[0]!.epoch as string;
      online(b, 's1', 'bob', 'short.a');
      assert.equal((await joined(b, 's1', 'short.a', { offset: 1, epoch })).recovered, 1);
      await sleep(1300);
      const late = await joined(b, 's1', 'short.a', { offset: 1, epoch });
      assert.equal(late.recovered, 0);
      assert.equal(late.top, 3, 'the offsets go on: only the messages are gone');
      assert.equal((await joined(b, 's1', 'short.a', { offset: 3, epoch })).recovered, 1, 'nothing missed, nothing to replay');
    } finally {
      await b.close();
    }
  });

  test('history.max_bytes pushes out the oldest messages of the group published to least recently', async () => {
    const b = await startBroker({ historyRules: RULES, history: { max_bytes: 2000 } });
    try {
      await publish(b, 'room.old', 5);
      await publish(b, 'room.new', 5);
      // Each frame is about 140 bytes: 20 of them are over 2000.
      await publish(b, 'room.new', 10);
      b.link.history(0, 's1', 'room.old', 'old', 0);
      const old = JSON.parse((await b.link.next('reply', (c) => c.frame.includes('"ref":"old"'))).frame) as Record<string, unknown>;
      b.link.history(0, 's1', 'room.new', 'new', 0);
      const recent = JSON.parse((await b.link.next('reply', (c) => c.frame.includes('"ref":"new"'))).frame) as Record<string, unknown>;
      const oldKept = (old.msgs as unknown[]).length;
      const newKept = (recent.msgs as unknown[]).length;
      assert.ok(oldKept < 5, `room.old lost its oldest first (kept ${oldKept})`);
      assert.ok(newKept > oldKept, `room.new kept more (${newKept})`);
      assert.ok(JSON.stringify(old.msgs).length + JSON.stringify(recent.msgs).length <= 2100);
    } finally {
      await b.close();
    }
  });

  test('history.max_groups forgets the least recently used group without members: its epoch changes', async () => {
    const b = await startBroker({ historyRules: RULES, history: { max_groups: 2 } });
    try {
      online(b, 's1', 'bob', 'room.kept');
      const kept = await publish(b, 'room.kept', 1);
      const idle = await publish(b, 'room.idle', 1);
      await publish(b, 'room.third', 1);
      const again = await publish(b, 'room.idle', 1);
      assert.equal(again[0]!.offset, 1, 'room.idle was forgotten, though room.kept was used before it: it has a member');
      assert.notEqual(again[0]!.epoch, idle[0]!.epoch);
      // room.kept, with a member, outlived both though it was used least recently.
      const keptAgain = await joined(b, 's1', 'room.kept', { offset: 1, epoch: kept[0]!.epoch as string });
      assert.equal(keptAgain.recovered, 1);
    } finally {
      await b.close();
    }
  });

  test('history.max_groups: groups that never held a message are forgotten first, so queries of unused groups cannot push out real history', async () => {
    const b = await startBroker({ historyRules: RULES, history: { max_groups: 2 } });
    try {
      const real = await publish(b, 'room.real', 3);
      // Nobody is a member of room.real now; a user queries groups nobody ever published to.
      for (let n = 0; n < 20; n++) {
        b.link.history(0, 's-q', `room.never-${n}`, `q${n}`, 0);
        await b.link.next('reply', (c) => c.frame.includes(`"ref":"q${n}"`));
      }
      online(b, 's1', 'alice', 'room.real');
      const back = await joined(b, 's1', 'room.real', { offset: 1, epoch: real[0]!.epoch as string });
      assert.equal(back.recovered, 1, 'room.real kept its epoch and messages');
      assert.deepEqual(back.replay.flatMap((f) => msgsIn(f).map((m) => m.offset)), [2, 3]);
    } finally {
      await b.close();
    }
  });

  test('hostile group names are names like any other', async () => {
    const b = await startBroker({ historyRules: RULES });
    try {
      const msgs = await publish(b, '__proto__', 2, 'constructor');
      assert.deepEqual(msgs.map((m) => m.offset), [1, 2]);
      online(b, 's1', '__proto__', '__proto__');
      const back = await joined(b, 's1', '__proto__', { offset: 0, epoch: msgs[0]!.epoch as string });
      assert.equal(back.recovered, 1);
      b.link.presenceQuery(0, 's1', '__proto__', 'p');
      const answer = JSON.parse((await b.link.next('reply', (c) => c.frame.includes('"ref":"p"'))).frame) as Record<string, unknown>;
      assert.equal(Object.getOwnPropertyDescriptor(answer.users, '__proto__')?.value, 1);
      assert.deepEqual(answer.total, { users: 1, conns: 1 });
    } finally {
      await b.close();
    }
  });
});

describe('persisted group history (history.persist)', () => {
  test('a clean restart keeps every epoch, offset and message; offsets go on', async () => {
    const first = await startBroker({ historyRules: RULES, history: { persist: true }, instance: 'run1' });
    const msgs = await publish(first, 'room.a', 4);
    const epoch = msgs[0]!.epoch as string;
    const figures = first.broker.historyStats();
    assert.equal(figures?.messages, 4);
    await first.close(true);
    const second = await startBroker({ historyRules: RULES, history: { persist: true }, dataDir: first.dataDir, instance: 'run2' });
    try {
      assert.deepEqual(second.broker.historyStats(), figures, '/stats shows the same groups, messages and bytes kept');
      online(second, 's1', 'bob', 'room.a');
      const back = await joined(second, 's1', 'room.a', { offset: 1, epoch });
      assert.equal(back.recovered, 1);
      assert.equal(back.epoch, epoch);
      assert.deepEqual(back.replay.flatMap((f) => msgsIn(f).map((m) => m.offset)), [2, 3, 4]);
      assert.deepEqual(msgsIn(back.replay[0]!).map((m) => m.data), [{ n: 1 }, { n: 2 }, { n: 3 }]);
      const next = await publish(second, 'room.a', 1);
      assert.equal(next[0]!.offset, 5);
      assert.equal(next[0]!.epoch, epoch);
    } finally {
      await second.close();
    }
  });

  test('a run without history.persist in between: the next run with it gives every group a new epoch, since what was published meanwhile is not stored', async () => {
    for (const between of [{ historyRules: RULES }, { historyRules: RULES, history: { persist: false } }, {}]) {
      const first = await startBroker({ historyRules: RULES, history: { persist: true }, instance: 'run1' });
      const before = await publish(first, 'room.a', 3);
      await first.close(true);
      const second = await startBroker({ ...between, dataDir: first.dataDir, instance: 'run2' });
      if ('historyRules' in between) await publish(second, 'room.a', 2);
      await second.close(true);
      const third = await startBroker({ historyRules: RULES, history: { persist: true }, dataDir: first.dataDir, instance: 'run3' });
      try {
        online(third, 's1', 'bob', 'room.a');
        const back = await joined(third, 's1', 'room.a', { offset: 2, epoch: before[0]!.epoch as string });
        assert.equal(back.recovered, 0, `not recovered across a run of ${JSON.stringify(between)}`);
        assert.notEqual(back.epoch, before[0]!.epoch);
      } finally {
        await third.close();
      }
    }
  });

  test('without persistence a restart gives every group a new epoch, offsets from 1', async () => {
    const first = await startBroker({ historyRules: RULES, instance: 'run1' });
    const before = await publish(first, 'room.a', 2);
    await first.close(true);
    const second = await startBroker({ historyRules: RULES, dataDir: first.dataDir, instance: 'run2' });
    try {
      const after = await publish(second, 'room.a', 1);
      assert.equal(after[0]!.offset, 1);
      assert.notEqual(after[0]!.epoch, before[0]!.epoch);
    } finally {
      await second.close();
    }
  });
});

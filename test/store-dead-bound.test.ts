/**
 * The dead letters are bounded (store.max_dead_letters, store.max_dead_letter_bytes): past
 * either, the letters that failed first are dropped and counted (src/store/dead-letter-bound.ts).
 * A real LMDB store in a temporary directory.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { open } from 'lmdb';
import type { DeadLetterLimits } from '../src/store/dead-letter-bound.js';
import type { DeadLetter } from '../src/store/messages.js';
import { MessageStore } from '../src/store/store.js';
import { startBroker } from './helpers/broker.js';
import { untilTrue } from './helpers/messaging.js';
import { tempDataDir } from './helpers/server.js';

const letter = (n: number, data = '"x"'): DeadLetter => ({
  id: `dead-${String(n).padStart(3, '0')}`,
  seq: n,
  target: 'u:bob',
  from: 'alice',
  group: null,
  data,
  pri: 0,
  ts: 1_000 + n,
  at: 0,
  attempts: 1,
  strategy: null,
  reason: 'test',
  failedAt: 2_000 + n,
});

/** The letters kept, oldest id first (ids follow the failure order here). */
const kept = (store: MessageStore): string[] => store.listDead(1000).map((l) => l.id);

describe('the dead letters are bounded', () => {
  const dirs: string[] = [];
  const opened = async (limits: DeadLetterLimits, dir = tempDataDir()): Promise<MessageStore> => {
    dirs.push(dir);
    return MessageStore.open(dir, 'none', limits);
  };
  after(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  test('past max_dead_letters the letters that failed first are dropped, and counted', async () => {
    const store = await opened({ letters: 5, bytes: Infinity });
    try {
      // Written out of failure order: the age, not the id or the arrival, decides.
      for (const n of [3, 11, 0, 7, 1, 9, 4, 10, 2, 8, 5, 6]) assert.equal(await store.putDeadLetter(letter(n)), true);
      await untilTrue('5 letters kept, 7 dropped', () => store.countDead() === 5 && store.dead.dropped === 7);
      assert.deepEqual(kept(store), ['dead-007', 'dead-008', 'dead-009', 'dead-010', 'dead-011']);
      assert.deepEqual(store.dead.size, { letters: 5, bytes: 15 });
    } finally {
      await store.close();
    }
  });

  test('past max_dead_letter_bytes likewise, by the bytes of their data', async () => {
    const store = await opened({ letters: 1000, bytes: 100 });
    try {
      for (let n = 0; n < 10; n++) await store.putDeadLetter(letter(n, JSON.stringify('y'.repeat(28))));
      await untilTrue('3 letters kept', () => store.countDead() === 3);
      assert.deepEqual(kept(store), ['dead-007', 'dead-008', 'dead-009']);
      assert.equal(store.dead.size.bytes, 90);
    } finally {
      await store.close();
    }
  });

  test('removal, purge and a restart keep the count and bytes the bound judges by', async () => {
    const dir = tempDataDir();
    let store = await opened({ letters: 4, bytes: Infinity }, dir);
    for (let n = 0; n < 4; n++) await store.putDeadLetter(letter(n));
    assert.equal(await store.removeDead('dead-001'), true);
    assert.deepEqual(store.dead.size, { letters: 3, bytes: 9 });
    await store.close();
    store = await MessageStore.open(dir, 'none', { letters: 4, bytes: Infinity });
    try {
      assert.deepEqual(store.dead.size, { letters: 3, bytes: 9 });
      for (let n = 4; n < 6; n++) await store.putDeadLetter(letter(n));
      await untilTrue('4 letters kept', () => store.countDead() === 4);
      assert.deepEqual(kept(store), ['dead-002', 'dead-003', 'dead-004', 'dead-005'], 'dead-000 was the oldest left');
      assert.equal(await store.purgeDead(), 4);
      assert.deepEqual(store.dead.size, { letters: 0, bytes: 0 });
      await store.putDeadLetter(letter(6));
      assert.deepEqual(kept(store), ['dead-006']);
    } finally {
      await store.close();
    }
  });

  test('a store written before the bound (letters without their age entries) is indexed and trimmed at open, then held to it', async () => {
    const dir = tempDataDir();
    dirs.push(dir);
    const raw = open({ path: dir, maxDbs: 8 });
    const dlq = raw.openDB<DeadLetter, string>({ name: 'dlq' });
    for (const n of [5, 2, 8, 0, 6]) await dlq.put(letter(n).id, letter(n));
    await raw.close();
    const store = await MessageStore.open(dir, 'none', { letters: 3, bytes: Infinity });
    try {
      // Trimmed at open, without waiting for a new letter.
      await untilTrue('3 letters kept', () => store.countDead() === 3);
      assert.deepEqual(kept(store), ['dead-005', 'dead-006', 'dead-008']);
      assert.deepEqual(store.dead.size, { letters: 3, bytes: 9 });
      await store.putDeadLetter(letter(9));
      await untilTrue('3 letters kept', () => store.dead.dropped === 3);
      assert.deepEqual(kept(store), ['dead-006', 'dead-008', 'dead-009']);
    } finally {
      await store.close();
    }
  });

  test("a flood of LOW sends to a full recipient's queue keeps the dead letters at the bound; the broker counts the drops", async () => {
    const t = await startBroker({ delivery: { max_pending_per_user: 1 }, store: { max_dead_letters: 3 } });
    try {
      for (let n = 0; n < 20; n++) {
        t.link.send(0, 'flood-1', 'flooder', 'offline-bob', n, { ref: `r${n}`, pri: 0 });
        assert.equal((await t.link.answerTo(`r${n}`)).op, 'senderAck');
      }
      // 19 pushed out of bob's queue of 1; 3 of them kept, the latest.
      await untilTrue('16 letters dropped', () => t.broker.stats.dead_dropped === 16);
      assert.equal(t.broker.stats.dropped_low, 19);
      assert.deepEqual(t.store.listDead(10).map((l) => l.data).sort(), ['16', '17', '18']);
    } finally {
      await t.close();
    }
  });
});

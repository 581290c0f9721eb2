/** The hold of history ops while a pm2 reload's new process waits for the store (src/broker/history-hold.ts). */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HistoryHold } from '../src/broker/history-hold.js';
import { ToBroker } from '../src/link/records.js';

function holdWith(options: { maxRecords?: number; maxPerUser?: number; waitMs?: number } = {}) {
  const refusals: unknown[][] = [];
  const handled: string[] = [];
  let timedOut = 0;
  const hold = new HistoryHold({
    waitMs: options.waitMs ?? 60_000,
    log: { info: () => {}, warn: () => {} },
    link: {
      error: (...args: unknown[]) => void refusals.push(['error', ...args]),
      groupJoinFailed: (...args: unknown[]) => void refusals.push(['groupJoinFailed', ...args]),
    },
    keeps: (group) => group.startsWith('room.'),
    userOf: (sid) => `user-of-${sid}`,
    timedOut: () => void timedOut++,
    ...(options.maxRecords !== undefined && { maxRecords: options.maxRecords }),
    ...(options.maxPerUser !== undefined && { maxPerUser: options.maxPerUser }),
  });
  const record = (kind: number, f: unknown[], name: string): boolean => hold.holdsRecord(0, kind, f, () => void handled.push(name));
  return { hold, refusals, handled, record, timedOut: () => timedOut };
}

describe('the history hold', () => {
  test('holds joins, history queries, leaves and pubs of history groups, lets everything else through, and handles what it held in arrival order on release', () => {
    const h = holdWith();
    assert.equal(h.record(ToBroker.GROUP_JOIN, ['s1', 'room.a', 'j', 3, 'e'], 'join'), true);
    assert.equal(h.record(ToBroker.PUB, ['s1', 'p', 'u', 'room.a', '"x"', 1, null, 0], 'pub'), true);
    assert.equal(h.record(ToBroker.PUB, ['s1', 'p', 'u', 'lobby', '"x"', 1, 'typed', 0], 'processed pub of a group without history'), false);
    assert.equal(h.record(ToBroker.HISTORY, ['s1', 'room.a', 'h', 0, 0], 'history'), true);
    assert.equal(h.record(ToBroker.GROUP_LEAVE, ['s1', 'room.a', 'l'], 'leave'), true);
    assert.equal(h.record(ToBroker.SEND, ['s1', null, 'u', 'v', '1', 1, 0, null, 0], 'send'), false);
    assert.deepEqual(h.handled, []);
    h.hold.release('taken over');
    assert.deepEqual(h.handled, ['join', 'pub', 'history', 'leave']);
    assert.deepEqual(h.refusals, []);
  });

  test('full, it refuses with E_OVERLOADED (a join through its JOINED, so the shard settles it), but never a leave', () => {
    const h = holdWith({ maxRecords: 1 });
    assert.equal(h.record(ToBroker.GROUP_JOIN, ['s1', 'room.a', 'j1', -1, null], 'first join'), true);
    assert.equal(h.record(ToBroker.GROUP_JOIN, ['s2', 'room.a', 'j2', -1, null], 'second join'), true);
    assert.equal(h.record(ToBroker.PUB, ['s2', 'p', 'u', 'room.a', '"x"', 1, null, 0], 'pub'), true);
    assert.equal(h.record(ToBroker.HISTORY, ['s2', 'room.a', 'h', 0, 0], 'history'), true);
    assert.equal(h.record(ToBroker.GROUP_LEAVE, ['s1', 'room.a', 'l'], 'leave'), true);
    const message = 'group history is being handed over from the previous process; retry shortly';
    assert.deepEqual(h.refusals, [
      ['groupJoinFailed', 0, 's2', 'room.a', 'j2', message, 'E_OVERLOADED'],
      ['error', 0, 's2', 'E_OVERLOADED', message, 'p'],
      ['error', 0, 's2', 'E_OVERLOADED', message, 'h'],
    ]);
    h.hold.release('taken over');
    assert.deepEqual(h.handled, ['first join', 'leave']);
  });

  test('one user cannot fill it: past its share its ops are refused, another user\'s are held', () => {
    const h = holdWith({ maxPerUser: 2 });
    for (let i = 0; i < 3; i++) h.record(ToBroker.GROUP_JOIN, ['hog', `room.${i}`, `j${i}`, -1, null], `hog ${i}`);
    assert.equal(h.record(ToBroker.GROUP_JOIN, ['other', 'room.a', 'j', 3, 'e'], 'other'), true);
    assert.deepEqual(h.refusals.map((r) => [r[0], r[2], r[4]]), [['groupJoinFailed', 'hog', 'j2']]);
    h.hold.release('taken over');
    assert.deepEqual(h.handled, ['hog 0', 'hog 1', 'other']);
  });

  test('without the store within the wait, it says so once; stop() drops what it held', async () => {
    const h = holdWith({ waitMs: 20 });
    h.record(ToBroker.GROUP_JOIN, ['s1', 'room.a', 'j', -1, null], 'join');
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(h.timedOut(), 1);
    h.hold.stop();
    h.hold.release('waited');
    assert.deepEqual(h.handled, []);
  });
});

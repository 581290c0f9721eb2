/**
 * Presence answers and events are kept under the largest frame the link to the shards carries.
 * A review had 300 members with 128-character ids (and 1,000 with UUID-long ids) join a group
 * on a server with small rings: the full `presence` answer passed what a ring record holds and
 * was never sent (no answer, no error), and no presence event came either.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fittingPresenceAnswer, presenceEventFrames } from '../src/broker/group-presence.js';
import type { RunningServer } from '../src/index.js';
import { connect, member, type TestClient } from './helpers/client.js';
import { isEvent } from './helpers/presence.js';
import { startInProcess } from './helpers/server.js';

const longId = (i: number): string => `${String(i).padStart(4, '0')}${'u'.repeat(124)}`;

describe('presence frames and the largest frame', () => {
  test('events are split by bytes as well as by max_list; each name once, in order; every frame under the bound', () => {
    const joins = Array.from({ length: 300 }, (_, i) => longId(i));
    const leaves = Array.from({ length: 50 }, (_, i) => `gone${i}`);
    const frames = presenceEventFrames('room', joins, leaves, 1000, 8 * 1024);
    assert.ok(frames.length > 1);
    for (const frame of frames) assert.ok(Buffer.byteLength(frame) <= 8 * 1024, `${Buffer.byteLength(frame)} bytes`);
    const parsed = frames.map((f) => JSON.parse(f) as { joins: string[]; leaves: string[] });
    assert.deepEqual(parsed.flatMap((p) => p.joins), joins);
    assert.deepEqual(parsed.flatMap((p) => p.leaves), leaves);
    assert.equal(presenceEventFrames('room', joins, [], 100, Infinity).length, 3, 'max_list still splits');
  });

  test('an answer whose list passes the bound has the totals only, as for a group over max_list', () => {
    const users = new Map(Array.from({ length: 300 }, (_, i) => [longId(i), 1] as const));
    const whole = JSON.parse(fittingPresenceAnswer('room', 'r', users, 300, 300, 1024 * 1024)) as Record<string, unknown>;
    assert.equal(Object.keys(whole.users as object).length, 300);
    const totals = JSON.parse(fittingPresenceAnswer('room', 'r', users, 300, 300, 16 * 1024)) as Record<string, unknown>;
    assert.deepEqual([totals.users, totals.total, totals.ref], [undefined, { users: 300, conns: 300 }, 'r']);
  });
});

describe('a server with small rings and a group of 300 long user ids', () => {
  let server: RunningServer;
  const open: TestClient[] = [];
  before(async () => {
    server = await startInProcess({ websocket: { server: { shards: 1, max_payload: 16 * 1024 }, performance: { ring_bytes: 64 * 1024 }, limits: { max_connections_per_ip: 1000 } } });
  });
  after(async () => {
    for (const c of open) c.close();
    await server.close();
  });

  test('a watcher gets every join as events, and a presence query gets an answer (its totals)', async () => {
    const watcher = await member(server.port, 'watcher');
    open.push(watcher);
    watcher.send({ op: 'join', group: 'crowd', presence: true, ref: 'w' });
    await watcher.next((f) => f.ref === 'w');
    const ids = Array.from({ length: 300 }, (_, i) => longId(i));
    for (let i = 0; i < ids.length; i += 50) {
      const batch = await Promise.all(ids.slice(i, i + 50).map((id) => connect(server.port, { query: `user=${id}` })));
      for (const c of batch) c.send({ op: 'join', group: 'crowd' });
      open.push(...batch);
    }
    const seen = new Set<string>();
    while (seen.size < ids.length) for (const id of ((await watcher.next(isEvent('crowd'))).joins as string[]) ?? []) seen.add(id);
    watcher.send({ op: 'presence', group: 'crowd', ref: 'q' });
    const answer = await watcher.next((f) => f.ref === 'q');
    assert.deepEqual(answer.total, { users: 301, conns: 301 });
    assert.equal(answer.users, undefined, 'too long a list for this ring: the totals');
  });
});

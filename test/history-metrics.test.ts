import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { getJson, getText, member, type Frame, type TestClient } from './helpers/client.js';
import { nextMsgs, until } from './helpers/messaging.js';
import { parseExposition, promtoolCheck } from './helpers/prometheus.js';
import { startInProcess } from './helpers/server.js';
import type { RunningServer } from '../src/index.js';

const MAX_BYTES = 2000;
const HISTORY = {
  websocket: {
    monitoring: { metrics_collection_interval: 0.2 },
    history: [
      { pattern: 'room.*', size: 1000 },
      { pattern: 'short.*', size: 100, ttl: 1 },
    ],
  },
  history: { max_groups: 2, max_bytes: MAX_BYTES },
};

/** /stats `history` and the /metrics families that show the same figures. */
const FAMILIES = {
  groups: ['ocs_history_groups', 'gauge'],
  messages: ['ocs_history_messages', 'gauge'],
  bytes: ['ocs_history_bytes', 'gauge'],
  groups_forgotten: ['ocs_history_groups_forgotten_total', 'counter'],
  evicted_for_bytes: ['ocs_history_messages_evicted_total', 'counter'],
  expired: ['ocs_history_messages_expired_total', 'counter'],
} as const;
type HistoryFigures = Record<keyof typeof FAMILIES, number>;

/** Polls /stats until its `history` is `expected` (the figures are rendered once per interval); fails with what it saw last. */
async function untilStats(port: number, expected: HistoryFigures): Promise<void> {
  let seen: unknown;
  const check = async (): Promise<true | undefined> => {
    seen = (await getJson(port, '/stats')).body.history;
    return JSON.stringify(seen) === JSON.stringify(expected) ? true : undefined;
  };
  await until(check, '/stats history').catch(() => assert.deepEqual(seen, expected, '/stats history'));
}

/** /metrics shows `expected` too, each figure as its own gauge or counter, in an exposition promtool accepts. */
async function assertMetrics(port: number, expected: HistoryFigures): Promise<void> {
  const { text } = await getText(port, '/metrics');
  const { samples, types } = parseExposition(text);
  for (const [key, [name, type]] of Object.entries(FAMILIES)) {
    assert.equal(types.get(name), type, name);
    assert.deepEqual(
      samples.filter((s) => s.name === name).map((s) => s.value),
      [expected[key as keyof HistoryFigures]],
      name,
    );
  }
  assert.equal(promtoolCheck(text) ?? '', '');
}

/** A group's kept messages (one `history` page from the start) and their bytes, as the server keeps them. */
async function kept(client: TestClient, group: string): Promise<{ msgs: Frame[]; bytes: number }> {
  const ref = `h-${group}`;
  client.send({ op: 'history', group, ref });
  const msgs = (await client.next((f) => f.op === 'history' && f.ref === ref)).msgs as Frame[];
  // A kept message is its msg frame's text, which JSON.stringify gives back exactly (same keys, same order).
  return { msgs, bytes: msgs.reduce((sum, m) => sum + Buffer.byteLength(JSON.stringify(m)), 0) };
}

describe('group history in /stats and /metrics (2 shards)', () => {
  let server: RunningServer;
  let alice: TestClient;
  /** Messages history.max_bytes pushed out in the first test, counted on. */
  let evicted = 0;
  before(async () => {
    server = await startInProcess(HISTORY);
  });
  after(async () => {
    alice?.close();
    await server.close();
  });

  test('history.max_bytes: the messages pushed out are counted, and what is left is the messages and bytes kept', async () => {
    alice = await member(server.port, 'alice', ['room.a']);
    for (let i = 0; i < 12; i++) alice.send({ op: 'pub', group: 'room.a', data: 'x'.repeat(300) });
    await nextMsgs(alice, 12);
    const room = await kept(alice, 'room.a');
    assert.ok(room.msgs.length > 0 && room.msgs.length < 12, `${room.msgs.length} kept`);
    assert.ok(room.bytes <= MAX_BYTES, `${room.bytes} bytes kept`);
    assert.deepEqual(room.msgs.map((m) => m.offset), Array.from({ length: room.msgs.length }, (_, i) => 12 - room.msgs.length + i + 1), 'the oldest went first');
    evicted = 12 - room.msgs.length;
    const expected = { groups: 1, messages: room.msgs.length, bytes: room.bytes, groups_forgotten: 0, evicted_for_bytes: evicted, expired: 0 };
    await untilStats(server.port, expected);
    await assertMetrics(server.port, expected);
  });

  test('history.max_groups: a third group forgets the one used least recently; ttl: messages past it are counted as expired', async () => {
    const bob = await member(server.port, 'bob', ['room.b', 'short.c']);
    try {
      bob.send({ op: 'pub', group: 'room.b', data: 'b' });
      for (let i = 0; i < 3; i++) bob.send({ op: 'pub', group: 'short.c', data: i });
      await nextMsgs(bob, 4);
      const room = await kept(bob, 'room.b');
      assert.equal(room.msgs.length, 1);
      // room.a went with its messages (not counted as evicted); short.c's three expire after its ttl of 1 s.
      const expected = { groups: 2, messages: 1, bytes: room.bytes, groups_forgotten: 1, evicted_for_bytes: evicted, expired: 3 };
      await untilStats(server.port, expected);
      await assertMetrics(server.port, expected);
    } finally {
      bob.close();
    }
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { getJson, member } from './helpers/client.js';
import { nextMsgs, settle } from './helpers/messaging.js';
import { startInProcess } from './helpers/server.js';
import type { RunningServer } from '../src/index.js';

/**
 * A backlog bigger than half a ring once went out as one batch record the ring could never
 * take: it waited at the head of the broker's queue for that shard forever, and everything
 * behind it (acks, welcomes, deliveries) waited too. Batches are now cut to what a ring carries.
 */
describe('a large backlog', () => {
  let server: RunningServer;
  before(async () => {
    // One shard: every client shares the one broker link a wedge would block.
    server = await startInProcess({ websocket: { server: { shards: 1 }, delivery: { ack_timeout: 30 } } });
  });
  after(() => server.close());

  test('40 messages of 60,000 characters for an offline user all arrive when it connects, and the shard keeps serving', async () => {
    const sender = await member(server.port, 'bulk-sender');
    const text = 'x'.repeat(60_000);
    for (let i = 0; i < 40; i++) {
      sender.send({ op: 'send', to: 'bulk-reader', data: { i, text }, ref: `s${i}` });
      assert.equal((await sender.next((f) => f.ref === `s${i}`, 10_000)).op, 'ack');
    }
    const reader = await member(server.port, 'bulk-reader');
    assert.equal(reader.welcome.pending, 40);
    const msgs = await nextMsgs(reader, 40, 20_000);
    assert.deepEqual(msgs.map((m) => (m.data as { i: number }).i), Array.from({ length: 40 }, (_, i) => i));
    assert.ok(msgs.every((m) => (m.data as { text: string }).text === text));
    for (const m of msgs) reader.send({ op: 'ack', id: m.id });
    await settle(reader);

    // The link still carries everything else: a new connection's welcome, a send and its ack.
    const late = await member(server.port, 'bulk-late');
    late.send({ op: 'send', to: 'bulk-reader', data: 'after', ref: 'after' });
    assert.equal((await late.next((f) => f.ref === 'after')).op, 'ack');
    const [afterMsg] = await nextMsgs(reader, 1);
    assert.equal(afterMsg!.data, 'after');
    reader.send({ op: 'ack', id: afterMsg!.id });
    const { body } = await getJson(server.port, '/admin/dlq');
    assert.equal(body.count, 0, 'nothing burnt its attempts into the dead-letter queue');
    for (const client of [sender, reader, late]) client.close();
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { getJson, member, onShard } from './helpers/client.js';
import { startInProcess } from './helpers/server.js';
import type { RunningServer } from '../src/index.js';

/**
 * A shard that stops reading its rings (a long GC pause, a hot loop) must not make the
 * others lose messages: what does not fit the ring waits in order, and past the overflow
 * limit the publisher is told E_OVERLOADED instead of the message vanishing.
 */
describe('a full cross-shard ring', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({
      websocket: {
        server: { max_payload: 4096 },
        performance: { ring_bytes: 65536, ring_overflow_bytes: 65536 },
      },
    });
  });
  after(() => server.close());

  const busyOn = (shard: number, name: string) => onShard(shard, (i) => member(server.port, `${name}${i}`, ['busy']));

  test('holds what does not fit, refuses what is over the limit, and delivers every accepted pub in order', async () => {
    const publisher = await busyOn(0, 'pub');
    const local = await busyOn(0, 'local');
    const remote = await busyOn(1, 'remote');
    server.injectShardStall(1, 1500);
    await new Promise((r) => setTimeout(r, 50)); // the stall has begun
    const total = 400;
    const filler = 'z'.repeat(1000); // ~1.1 KB frames: about 60 fill the ring
    for (let i = 0; i < total; i++) publisher.send({ op: 'pub', group: 'busy', data: { i, filler }, ref: String(i) });
    const accepted: number[] = [];
    let refused = 0;
    for (let i = 0; i < total; i++) {
      const reply = await publisher.next((f) => (f.op === 'ack' || f.op === 'err') && f.ref === String(i), 10_000);
      if (reply.op === 'ack') accepted.push(i);
      else {
        assert.equal(reply.code, 'E_OVERLOADED');
        refused++;
      }
    }
    assert.ok(refused > 0, 'the overflow limit was reached');
    assert.ok(accepted.length > 100, 'more than the ring alone holds was accepted');
    for (const client of [local, remote]) {
      const got: number[] = [];
      while (got.length < accepted.length) {
        const msg = await client.next((f) => f.op === 'msg', 10_000);
        got.push((msg.data as { i: number }).i);
      }
      assert.deepEqual(got, accepted, 'every accepted pub, in order, nothing refused');
    }
    const { body } = await getJson(server.port, '/stats');
    const totals = body.totals as Record<string, number>;
    assert.ok(totals.ring_full! > 0);
    assert.equal(totals.ring_overloaded, refused);
    for (const client of [publisher, local, remote]) client.close();
  });

  test('once the consumer caught up, publishes are accepted again', async () => {
    const publisher = await member(server.port, 'again', ['busy']);
    publisher.send({ op: 'pub', group: 'busy', data: 'after', ref: 'after' });
    assert.equal((await publisher.next((f) => f.ref === 'after')).op, 'ack');
    publisher.close();
  });
});

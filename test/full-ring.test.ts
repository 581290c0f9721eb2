import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, getJson, member, onShard } from './helpers/client.js';
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

  test('while one publisher floods, another on the same shard that publishes little is still accepted (each has an allowance), and its pub is delivered', async () => {
    const flooder = await busyOn(0, 'flood');
    const quiet = await busyOn(0, 'quiet');
    const remote = await busyOn(1, 'far');
    server.injectShardStall(1, 1500);
    await new Promise((r) => setTimeout(r, 50));
    const filler = 'z'.repeat(1000);
    for (let i = 0; i < 400; i++) flooder.send({ op: 'pub', group: 'busy', data: { i, filler }, ref: `f${i}` });
    await flooder.next((f) => f.op === 'err' && f.code === 'E_OVERLOADED', 10_000);
    quiet.send({ op: 'pub', group: 'busy', data: 'still heard', ref: 'quiet' });
    assert.equal((await quiet.next((f) => f.ref === 'quiet', 10_000)).op, 'ack', 'within its allowance while the ring is backed up');
    await remote.next((f) => f.op === 'msg' && f.data === 'still heard', 10_000);
    for (const client of [flooder, quiet, remote]) client.close();
  });

  test('once the consumer caught up, publishes are accepted again', async () => {
    const publisher = await member(server.port, 'again', ['busy']);
    publisher.send({ op: 'pub', group: 'busy', data: 'after', ref: 'after' });
    assert.equal((await publisher.next((f) => f.ref === 'after')).op, 'ack');
    publisher.close();
  });

  test('what waits for a shard that crashed neither refuses the other shards\' pubs while it is down nor reaches the members of its replacement', async () => {
    const publisher = await onShard(0, (i) => member(server.port, `crash-pub${i}`, ['doomed', 'home']));
    const remote = await onShard(1, (i) => member(server.port, `crash-remote${i}`, ['doomed']));
    // Shard 1 stops reading, then dies with its ring full and this shard's overflow over the limit.
    // The stall first: the crash, a message behind it, is read only once it is over (sent first,
    // its throw could come before the stall, and the shard die before the ring filled).
    const restarted = server.whenRestarted(1, 1);
    server.injectShardStall(1, 1000);
    server.injectShardCrash(1);
    await new Promise((r) => setTimeout(r, 50));
    const filler = 'z'.repeat(1000);
    for (let i = 0; i < 200; i++) publisher.send({ op: 'pub', group: 'doomed', data: { i, filler }, ref: `d${i}` });
    const refusedBefore = await publisher.next((f) => f.op === 'err' && f.code === 'E_OVERLOADED', 10_000);
    assert.ok(refusedBefore.ref, 'the overflow limit was reached before the crash');
    await new Promise<void>((resolve) => remote.ws.once('close', () => resolve()));
    // Down: a pub to a group with members on this shard only is accepted.
    publisher.send({ op: 'pub', group: 'home', data: 'while down', ref: 'home' });
    assert.equal((await publisher.next((f) => f.ref === 'home', 5000)).op, 'ack');
    // This shard stalls across the restart, its overflow unflushed; a member joins on the new
    // shard 1 meanwhile (of a dozen connections, the first welcomed: shard 0 welcomes none yet).
    const stallEnds = Date.now() + 3000;
    server.injectShardStall(0, 3000);
    await restarted;
    const attempts = Array.from({ length: 12 }, (_, i) => connect(server.port, { query: `user=crash-new${i}` }));
    const newcomer = await Promise.any(
      attempts.map(async (attempt) => {
        const client = await attempt;
        if ((await client.next((f) => f.op === 'welcome', 5000)).shard !== 1) throw new Error('on shard 0');
        return client;
      }),
    );
    newcomer.send({ op: 'join', group: 'doomed', ref: 'j' });
    await newcomer.next((f) => f.op === 'joined');
    assert.ok(Date.now() < stallEnds - 200, 'joined while shard 0 was still stalled');
    await new Promise((r) => setTimeout(r, stallEnds - Date.now() + 1000));
    assert.deepEqual(newcomer.frames.filter((f) => f.op === 'msg' || f.op === 'batch'), [], 'nothing published before it joined');
    for (const attempt of attempts) void attempt.then((client) => client.close(), () => {});
    publisher.close();
  });
});

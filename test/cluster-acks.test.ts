/**
 * Acks in cluster mode are settled a pass over the rings at a time (src/cluster/ack-script.ts):
 * an `ack` frame of 16 ids costs Redis one script, not 16, and each id still gets its own answer.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { ACKS } from '../src/cluster/ack-script.js';
import { MAX_ACK_IDS } from '../src/protocol/frames.js';
import { member, type Frame } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { nextMsgs, settle } from './helpers/messaging.js';
import { announceSkip } from './helpers/redis.js';
import { watchCommands } from './helpers/script-work.js';

const skip = announceSkip('cluster-acks.test');
const ACKS_SHA = createHash('sha1').update(ACKS).digest('hex');

describe('acks in cluster mode', { skip, timeout: 60_000 }, () => {
  const cluster = clusterFixture({ nodes: { node: { prefix: 'acks:', extra: { websocket: { delivery: { ack_timeout: 30 } } }, inProcess: true } } });

  test('one ack frame of 16 ids runs one ACKS script (two where the broker read the frame\'s records in two passes); the real ids are settled, each other id gets E_UNKNOWN_ID', async () => {
    const sender = await member(cluster.nodes.node.port, 'sender');
    for (let i = 0; i < 12; i++) {
      sender.send({ op: 'send', to: 'reader', data: i, ref: `s${i}` });
      assert.equal((await sender.next((f) => f.ref === `s${i}`)).op, 'ack');
    }
    const reader = await member(cluster.nodes.node.port, 'reader');
    const ids = (await nextMsgs(reader, 12)).map((m) => m.id as string);
    const strangers = ['made-up', '__proto__', 'u:reader', ids[0]!];
    assert.equal(ids.length + strangers.length, MAX_ACK_IDS);

    const acksRun: string[][] = [];
    const unwatch = await watchCommands(cluster.redis.url, (args) => {
      if (args[0]?.toLowerCase() === 'evalsha' && args[1] === ACKS_SHA) acksRun.push(args);
    });
    try {
      reader.send({ op: 'ack', ids: [...ids, ...strangers] });
      const refused: Frame[] = [];
      for (let i = 0; i < strangers.length; i++) refused.push(await reader.next((f) => f.op === 'err'));
      assert.deepEqual(refused.map((f) => [f.code, f.id]), strangers.map((id) => ['E_UNKNOWN_ID', id]));
      await settle(reader);
      // The shard writes the frame's records as the broker reads them: a pass may end mid-frame.
      assert.ok(acksRun.length >= 1 && acksRun.length <= 2, `${acksRun.length} scripts for the frame`);
      assert.equal(acksRun.reduce((pairs, args) => pairs + (args.length - 4) / 2, 0), MAX_ACK_IDS, 'every id in them');
    } finally {
      unwatch();
    }
    assert.equal(reader.frames.filter((f) => f.op === 'err').length, 0, 'no answer for the 12 settled ids');

    // Settled for good: a new connection of the reader is owed nothing.
    reader.close();
    await reader.closed;
    const again = await member(cluster.nodes.node.port, 'reader');
    assert.equal(again.welcome.pending, 0);
    again.close();
    sender.close();
  });
});

describe('an ack that comes just after its deadline', { skip, timeout: 60_000 }, () => {
  const cluster = clusterFixture({ nodes: { node: { prefix: 'late:', inProcess: true } } }); // ack_timeout 1 s

  // A review's chaos runs: an ack between the SWEEP that put a message back to wait and the route
  // that delivers it again was refused E_UNKNOWN_ID, and the same connection got it again.
  test('settles the user\'s own message waiting again after a delivery; one never delivered is not settled', async () => {
    const sender = await member(cluster.nodes.node.port, 'sender');
    sender.send({ op: 'send', to: 'late', data: 'delivered once', ref: 's1' });
    const id = (await sender.next((f) => f.ref === 's1')).id as string;
    const late = await member(cluster.nodes.node.port, 'late');
    await nextMsgs(late, 1);
    late.close();
    await late.closed;
    // Past its deadline with nobody to route it to: waiting again, after one delivery.
    const admin = new Redis(cluster.redis.url);
    try {
      for (let i = 0; i < 100 && (await admin.hget(`late:m:${id}`, 'state')) !== 'w'; i++) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(await admin.hmget(`late:m:${id}`, 'state', 'attempts'), ['w', '1']);
      const [answer] = (await admin.eval(ACKS, 0, 'late:', id, 'late')) as unknown[];
      assert.ok(Array.isArray(answer), 'settled');
      assert.equal(await admin.exists(`late:m:${id}`), 0);

      sender.send({ op: 'send', to: 'nobody', data: 'never delivered', ref: 's2' });
      const waiting = (await sender.next((f) => f.ref === 's2')).id as string;
      assert.deepEqual(await admin.eval(ACKS, 0, 'late:', waiting, 'nobody'), [0], 'not received: not settled by an ack');
      assert.equal(await admin.hget(`late:m:${waiting}`, 'state'), 'w');
    } finally {
      admin.disconnect();
      sender.close();
    }
  });
});

/**
 * Acks in cluster mode are settled a pass over the rings at a time (src/cluster/ack-script.ts):
 * an `ack` frame of 16 ids costs Redis one script, not 16, and each id still gets its own answer.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { ACKS } from '../src/cluster/ack-script.js';
import { MAX_ACK_IDS } from '../src/protocol/frames.js';
import { member, type Frame } from './helpers/client.js';
import { nextMsgs, settle } from './helpers/messaging.js';
import { announceSkip, nodeConfig, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { startInProcess } from './helpers/server.js';
import type { RunningServer } from '../src/index.js';

const skip = announceSkip('cluster-acks.test');
const ACKS_SHA = createHash('sha1').update(ACKS).digest('hex');

describe('acks in cluster mode', { skip, timeout: 60_000 }, () => {
  let redis: PrivateRedis;
  let node: RunningServer;
  before(async () => {
    redis = await startPrivateRedis();
    node = await startInProcess(nodeConfig(redis.url, 'acks:', 1, { websocket: { delivery: { ack_timeout: 30 } } }));
  });
  after(async () => {
    await node?.close();
    await redis?.stop();
  });

  test('one ack frame of 16 ids runs one ACKS script (two where the broker read the frame\'s records in two passes); the real ids are settled, each other id gets E_UNKNOWN_ID', async () => {
    const sender = await member(node.port, 'sender');
    for (let i = 0; i < 12; i++) {
      sender.send({ op: 'send', to: 'reader', data: i, ref: `s${i}` });
      assert.equal((await sender.next((f) => f.ref === `s${i}`)).op, 'ack');
    }
    const reader = await member(node.port, 'reader');
    const ids = (await nextMsgs(reader, 12)).map((m) => m.id as string);
    const strangers = ['made-up', '__proto__', 'u:reader', ids[0]!];
    assert.equal(ids.length + strangers.length, MAX_ACK_IDS);

    const monitor = new Redis(redis.url);
    const acksRun: string[][] = [];
    const watching = await monitor.monitor();
    watching.on('monitor', (_time: string, args: string[]) => {
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
      watching.disconnect();
      monitor.disconnect();
    }
    assert.equal(reader.frames.filter((f) => f.op === 'err').length, 0, 'no answer for the 12 settled ids');

    // Settled for good: a new connection of the reader is owed nothing.
    reader.close();
    await reader.closed;
    const again = await member(node.port, 'reader');
    assert.equal(again.welcome.pending, 0);
    again.close();
    sender.close();
  });
});

/**
 * The limits on what one sender may store hold in cluster mode too, where the store is Redis
 * (src/cluster/scripts.ts STORE): messages (delivery.max_stored_per_sender) and their bytes of
 * data (max_stored_bytes_per_sender), given back as messages are acknowledged.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { member } from './helpers/client.js';
import { nextMsgs } from './helpers/messaging.js';
import { announceSkip, nodeConfig, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { startInProcess } from './helpers/server.js';
import type { RunningServer } from '../src/index.js';

const skip = announceSkip('cluster-limits.test');

describe('a sender\'s stored bytes in cluster mode', { skip, timeout: 60_000 }, () => {
  let redis: PrivateRedis;
  let node: RunningServer;
  before(async () => {
    redis = await startPrivateRedis();
    node = await startInProcess(nodeConfig(redis.url, 'limits:', 1, { websocket: { delivery: { max_stored_bytes_per_sender: 1024 } } }));
  });
  after(async () => {
    await node?.close();
    await redis?.stop();
  });

  test('past max_stored_bytes_per_sender the next send gets E_QUEUE_FULL naming it; another sender may still send; an ack gives the room back', async () => {
    const hog = await member(node.port, 'hog');
    const send = async (client: typeof hog, to: string, bytes: number, ref: string) => {
      client.send({ op: 'send', to, data: 'x'.repeat(bytes - 2), ref });
      return client.next((f) => f.ref === ref);
    };
    assert.equal((await send(hog, 'nobody', 900, 'h0')).op, 'ack');
    const refused = await send(hog, 'nobody', 200, 'h1');
    assert.deepEqual([refused.op, refused.code], ['err', 'E_QUEUE_FULL']);
    assert.match(String(refused.message), /you have 900 bytes of messages stored; this one has 200 \(delivery\.max_stored_bytes_per_sender\)/);
    const other = await member(node.port, 'other');
    assert.equal((await send(other, 'nobody', 900, 'o0')).op, 'ack');
    const nobody = await member(node.port, 'nobody');
    for (const m of await nextMsgs(nobody, 2)) nobody.send({ op: 'ack', id: m.id });
    let again = await send(hog, 'nobody', 200, 'h2');
    for (let i = 0; again.op !== 'ack' && i < 50; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      again = await send(hog, 'nobody', 200, `h2-${i}`);
    }
    assert.equal(again.op, 'ack', 'the acknowledged messages gave their bytes back');
    for (const c of [hog, other, nobody]) c.close();
  });
});

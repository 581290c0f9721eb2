/**
 * `ack` frames of made-up ids cost a frame of the rate limit per id. A review's one connection,
 * at 100 frames a second of 128 made-up ids each, ran 6,500 Redis scripts a second and stalled
 * stored messages on every node of a cluster (four made nodes declare Redis unreachable): each
 * id costs the broker a look-up, and an `err` back, for one token. Now a frame carries at most
 * 16 ids and each unknown one is charged, so such a flood runs at the rate of single frames.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RunningServer } from '../src/index.js';
import { MAX_ACK_IDS } from '../src/protocol/frames.js';
import { member } from './helpers/client.js';
import { startInProcess } from './helpers/server.js';

describe('made-up ack ids', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { server: { shards: 1 }, limits: { messages_per_second: 10, burst: 20, rate_violations_before_close: 100 } } });
  });
  after(() => server.close());

  test('each one the broker does not know costs the connection a frame of its rate limit; a bystander is not charged', async () => {
    const flooder = await member(server.port, 'flooder');
    const bystander = await member(server.port, 'bystander');
    const ids = (from: number): string[] => Array.from({ length: MAX_ACK_IDS }, (_, i) => `made-up-${from + i}`);
    for (const from of [0, MAX_ACK_IDS]) {
      flooder.send({ op: 'ack', ids: ids(from) });
      for (let i = 0; i < MAX_ACK_IDS; i++) assert.equal((await flooder.next((f) => f.op === 'err')).code, 'E_UNKNOWN_ID');
    }
    // 20 tokens, 2 frames, 32 unknown ids: in debt, so its next frame is refused.
    flooder.send({ op: 'join', group: 'g', ref: 'after' });
    const refused = await flooder.next((f) => f.ref === 'after');
    assert.deepEqual([refused.op, refused.code], ['err', 'E_RATE_LIMITED']);
    bystander.send({ op: 'ping', t: 2 });
    assert.equal((await bystander.next((f) => f.op === 'pong' || f.op === 'err')).op, 'pong');
    flooder.close();
    bystander.close();
  });
});

/**
 * SWEEP's put-off of an ack deadline while the holder's node is behind on its rings
 * (src/cluster/scripts.ts), run on a private Redis: at most one attempt given back per
 * delivery, whoever gives it back (RECLAIM too), and a node that stays behind does not hold a
 * message for ever. A review drove attempts to -4, and kept a message in flight through 1,000
 * deadlines, before.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RECLAIM } from '../src/cluster/reclaim-script.js';
import { STORE, SWEEP } from '../src/cluster/scripts.js';
import { ROUTE_USER } from '../src/cluster/window-scripts.js';
import { announceSkip, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';

const P = 'behind:';
const ACK = 1000;
const MULT = 2;
const MAX_BACKOFF = 4000;
const MAX_ATTEMPTS = 3;
const TTL = 60_000;

describe("SWEEP while a holder's node is behind", { skip: announceSkip('cluster-sweep-behind.test') }, () => {
  let redis: PrivateRedis;
  const run = (script: string, args: Array<string | number>): Promise<unknown> => redis.client().eval(script, 0, ...args.map(String));
  const attempts = async (id: string): Promise<number> => Number(await redis.client().hget(`${P}m:${id}`, 'attempts'));
  const due = async (id: string): Promise<number> => Number(await redis.client().zscore(`${P}due`, id));
  const sweep = (node: string, now: number, behindMs: number): Promise<unknown> => run(SWEEP, [P, now, 100, MAX_ATTEMPTS, TTL, node, behindMs, ACK, MULT, MAX_BACKOFF]);
  const claim = (id: string, user: string, now: number): Promise<unknown> => run(ROUTE_USER, [P, id, user, now, ACK, MULT, MAX_BACKOFF, 0, 10, 1e6]);

  /** A send to `user`, connected on nodeA and nodeB, stored and delivered at `t`. */
  async function delivered(id: string, user: string, t: number): Promise<void> {
    await run(STORE, [P, id, `u:${user}`, 'alice', '', '{"x":1}', 1, t, 0, '', 7, 1000, 0, 1e6, 1e9, t, TTL, '', 0]);
    await redis.client().hset(`${P}pu:${user}`, 'nodeA', 1, 'nodeB', 1);
    await redis.client().zadd(`${P}nodes`, t, 'nodeA', t, 'nodeB');
    await claim(id, user, t);
  }

  before(async () => {
    redis = await startPrivateRedis();
  });
  after(() => redis?.stop());

  test('a delivery whose claim RECLAIM gave back is not given back again by a behind SWEEP: attempts never go below 0', async () => {
    let t = 1_700_000_000_000;
    await delivered('m1', 'bob', t);
    for (let round = 0; round < 3; round++) {
      // The claim's answer was lost: RECLAIM gives its attempt back and makes it due now ...
      await run(RECLAIM, [P, 'u:bob', t, t + 5, 'm1']);
      // ... and nodeA, behind, sweeps it: routed again, not put off with a second attempt back.
      await sweep('nodeA', t + 10, 4000);
      assert.equal(await attempts('m1'), 0, `round ${round}`);
      t += 20;
      await redis.client().zadd(`${P}nodes`, t, 'nodeA', t, 'nodeB');
      await claim('m1', 'bob', t);
      assert.equal(await attempts('m1'), 1);
    }
  });

  test('a node that stays behind puts deadlines off once per delivery and max_attempts times per message: the message is still dead-lettered', async () => {
    await delivered('m2', 'carol', 1_700_000_100_000);
    for (let i = 0; i < 20 && (await redis.client().hget(`${P}m:m2`, 'state')) !== null; i++) {
      const now = (await due('m2')) + 1;
      await sweep('nodeA', now - 1, 4000); // renews its mark
      await redis.client().zadd(`${P}nodes`, now, 'nodeA', now, 'nodeB');
      await sweep('nodeB', now, 0);
      await claim('m2', 'carol', now + 1);
    }
    assert.equal(await redis.client().hget(`${P}m:m2`, 'state'), null, 'no longer stored');
    assert.equal(await redis.client().zscore(`${P}dlq`, 'm2'), '0', 'dead-lettered');
  });
});

/**
 * The fuzz harness itself (test/fuzzing/target.ts): a node it restarts is reported, not
 * replaced in silence. Each property run begins with ensureUp(), which restarts the nodes when
 * one died; a peer node's damage comes through Redis after the run that caused it, so its exit
 * landed past that run's checkpoint, and the next run's checkpoint saw only the new nodes
 * (`npm run fuzz -- --cluster` printed "servers started 2", no finding, exit 0).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { clusterFuzzConfig, FuzzTarget } from './fuzzing/target.js';
import { untilTrue } from './helpers/messaging.js';
import { announceSkip, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';

const skip = announceSkip('fuzz-harness.test');

describe('the fuzz target of a cluster node with a peer', { skip, timeout: 60_000 }, () => {
  let redis: PrivateRedis;
  let target: FuzzTarget;
  before(async () => {
    redis = await startPrivateRedis();
    target = await FuzzTarget.start({ variant: 'anonymous', config: clusterFuzzConfig(redis.url, 'fx:'), peer: true });
  });
  after(async () => {
    await target?.stop();
    await redis?.stop();
  });

  test('reports a peer that died after a checkpoint at the next one, though ensureUp() restarted it', async () => {
    assert.deepEqual(await target.checkpoint(), []);
    process.kill(target.peerPid!, 'SIGKILL'); // as a crash the last run caused, landing after its checkpoint
    await untilTrue('the peer is gone', () => !target.alive());
    // What the next property run does: ensureUp(), its session, then checkpoint().
    await target.ensureUp();
    const problems = await target.checkpoint();
    assert.ok(problems.some((p) => /peer node exited/.test(p)), `the peer's exit went unreported: ${JSON.stringify(problems)}`);
    assert.equal(target.generation, 2);
  });
});

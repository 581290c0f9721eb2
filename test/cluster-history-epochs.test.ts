/**
 * Whether a history group keeps its epoch when another Redis server runs its next script
 * (history-scripts.ts, the `rid` stamp; docs/messaging.md, "Epoch"): kept on a Redis that
 * loaded its own append-only file, renewed once on a replica promoted (it may lack what its
 * primary acknowledged), whether the node passes the server's run_id or none yet ('': the
 * script asks INFO itself). The scripts run directly on private Redis servers, as a node would
 * run them.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import { HISTORY_APPEND } from '../src/cluster/history-scripts.js';
import { until } from './helpers/messaging.js';
import { announceSkip, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';

const skip = announceSkip('cluster-history-epochs.test');
const P = 'he:';
const GROUP = 'room.e';

async function runIdOf(client: Redis): Promise<string> {
  return /run_id:(\w+)/.exec(await client.info('server'))![1]!;
}

/** One pub to GROUP, as a node that takes the server's run_id to be `runId`: its offset and epoch. */
async function append(client: Redis, runId: string, data: string): Promise<{ offset: number; epoch: string }> {
  const head = `{"op":"msg","id":"${data}","from":"u","group":"${GROUP}","data":"${data}","pri":0,"ts":1`;
  const candidate = `epoch-${Math.random().toString(36).slice(2)}`;
  const [offset, epoch] = (await client.eval(HISTORY_APPEND, 0, P, GROUP, 100, 0, Date.now(), candidate, 1000, 1e12, runId, head, 1)) as [number, string];
  return { offset, epoch };
}

describe('a history group on another Redis server', { skip }, () => {
  const servers: PrivateRedis[] = [];
  after(async () => {
    for (const server of servers) await server.stop();
  });

  test('keeps its epoch on a Redis back on its own append-only file', async () => {
    const redis = await startPrivateRedis({ durable: true });
    servers.push(redis);
    let client = redis.client();
    const before = await runIdOf(client);
    await append(client, before, 'a');
    const seen = await append(client, before, 'b');
    await redis.kill();
    await redis.restart();
    client = redis.client();
    const now = await runIdOf(client);
    assert.notEqual(now, before, 'a new run_id at every start');
    // A node that has not read the new run_id yet passes none, then the one it read.
    assert.deepEqual(await append(client, '', 'c'), { offset: seen.offset + 1, epoch: seen.epoch });
    assert.deepEqual(await append(client, now, 'd'), { offset: seen.offset + 2, epoch: seen.epoch });
  });

  test('takes a new epoch on a replica promoted, once', async () => {
    const primary = await startPrivateRedis({ durable: true });
    const replica = await startPrivateRedis({ durable: true });
    servers.push(primary, replica);
    const [p, r] = [primary.client(), replica.client()];
    await r.replicaof('127.0.0.1', primary.port);
    const primaryId = await runIdOf(p);
    const old = await append(p, primaryId, 'a');
    await until(async () => ((await r.hget(`${P}h:${GROUP}`, 'top')) === String(old.offset) ? true : undefined), 'the replica to have the group', 15_000);
    await r.replicaof('NO', 'ONE');
    const replicaId = await runIdOf(r);
    const promoted = await append(r, '', 'b');
    assert.notEqual(promoted.epoch, old.epoch, 'the replica may lack what its primary acknowledged: a new epoch');
    assert.equal(promoted.offset, 1);
    // Another node, which read the run_id, and one that has not yet: no further change either way.
    assert.deepEqual(await append(r, replicaId, 'c'), { offset: 2, epoch: promoted.epoch });
    assert.deepEqual(await append(r, '', 'd'), { offset: 3, epoch: promoted.epoch });
  });
});

/**
 * Scheduled sends in cluster mode go out at their time, not at the next sweep: the node that
 * stored one wakes up then (src/cluster/sweeps.ts); if that node is gone, any other node's
 * sweep takes it within cluster.sweep_interval. Two real nodes on a private Redis, with a
 * sweep interval long enough to tell the two apart.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { member, type TestClient } from './helpers/client.js';
import { announceSkip, nodeConfig, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { startProcess, type ServerProcess } from './helpers/server.js';

const skip = announceSkip('cluster-schedule.test');
const SWEEP_S = 3;

describe('scheduled sends across two nodes', { skip }, () => {
  let redis: PrivateRedis;
  const nodes: ServerProcess[] = [];
  const open: TestClient[] = [];
  const on = async (node: number, user: string): Promise<TestClient> => {
    const client = await member(nodes[node]!.port, user);
    open.push(client);
    return client;
  };

  before(async () => {
    redis = await startPrivateRedis();
    const config = nodeConfig(redis.url, 'sched:');
    Object.assign(config.cluster as object, { sweep_interval: SWEEP_S });
    for (let i = 0; i < 2; i++) nodes.push(await startProcess(config));
  });
  after(async () => {
    open.forEach((client) => client.close());
    await Promise.all(nodes.map((node) => node.stop()));
    await redis?.stop();
  });

  test('a scheduled send reaches its recipient on another node at its time, well before the next sweep', async () => {
    const sender = await on(0, 'planner');
    const recipient = await on(1, 'attendee');
    const at = Date.now() + 700;
    sender.send({ op: 'send', to: 'attendee', data: 'on time', at, ref: 's' });
    await sender.next((f) => f.op === 'ack' && f.ref === 's');
    const msg = await recipient.next((f) => f.op === 'msg', SWEEP_S * 2000);
    const late = Date.now() - at;
    assert.equal(msg.data, 'on time');
    assert.ok(late >= 0, `not before its time (${late} ms)`);
    assert.ok(late < 500, `${late} ms after its time, where the next sweep could be ${SWEEP_S} s away`);
  });

  test('when the node that stored it is gone, another node delivers it at its next sweep', async () => {
    const sender = await member(nodes[0]!.port, 'leaving');
    const recipient = await on(1, 'stayer');
    const at = Date.now() + 300;
    sender.send({ op: 'send', to: 'stayer', data: 'still delivered', at, ref: 'g' });
    await sender.next((f) => f.op === 'ack' && f.ref === 'g');
    await nodes[0]!.stop('SIGKILL');
    const msg = await recipient.next((f) => f.op === 'msg', SWEEP_S * 3000);
    assert.equal(msg.data, 'still delivered');
  });
});

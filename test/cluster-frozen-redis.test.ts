/**
 * A frozen Redis (open connections, no answers: SIGSTOP) in cluster mode: the node says so in
 * /health and recovers by itself, and what it had asked of Redis meanwhile is refused with a
 * code or followed up once Redis answers again.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { connect, getJson, member } from './helpers/client.js';
import { joinGroup } from './helpers/history.js';
import { nextMsgs, until } from './helpers/messaging.js';
import { announceSkip, nodeConfig, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { startInProcess } from './helpers/server.js';
import type { RunningServer } from '../src/index.js';

const skip = announceSkip('cluster-frozen-redis.test');
/**
 * A node on its own private Redis, which the test may freeze (SIGSTOP); whatever the test did,
 * Redis is resumed and both are stopped. `cluster`: settings over nodeConfig's.
 */
async function onFreezableRedis(prefix: string, extra: Record<string, unknown>, cluster: Record<string, unknown>, body: (node: RunningServer, redis: PrivateRedis) => Promise<void>): Promise<void> {
  const redis = await startPrivateRedis();
  const config = nodeConfig(redis.url, prefix, 1, extra) as { cluster: Record<string, unknown> };
  Object.assign(config.cluster, cluster);
  const node = await startInProcess(config);
  try {
    await body(node, redis);
  } finally {
    if (redis.pid !== null) process.kill(redis.pid, 'SIGCONT');
    await node.close();
    await redis.stop();
  }
}

describe('a frozen Redis (open connections, no answers)', { skip, timeout: 60_000 }, () => {
  test('the node says degraded within a heartbeat and a command timeout, and ok again once Redis answers', async () => {
    await onFreezableRedis('freeze:', {}, { command_timeout: 0.5 }, async (node, redis) => {
      const status = async (): Promise<string> => (await getJson(node.port, '/health')).body.status as string;
      assert.equal(await status(), 'ok');
      process.kill(redis.pid!, 'SIGSTOP');
      await until(async () => ((await status()) === 'degraded' ? true : undefined), 'degraded while Redis is frozen', 10_000);
      process.kill(redis.pid!, 'SIGCONT');
      await until(async () => ((await status()) === 'ok' ? true : undefined), 'ok once Redis answers', 15_000);
    });
  });

  // A heartbeat every 10 s (presence_ttl 30): a freeze shorter than that leaves the node up and its
  // connections open, so the request's own timeout, not the heartbeat's, is what the client hears of.
  const shortFreeze = { command_timeout: 0.5, presence_ttl: 30 };

  test('a send Redis did not answer in time is refused saying it may have been stored; stored after all, it reaches its connected recipient without a reconnection', async () => {
    await onFreezableRedis('freeze-send:', {}, shortFreeze, async (node, redis) => {
      const sender = await member(node.port, 'sender');
      const recipient = await member(node.port, 'recipient');
      process.kill(redis.pid!, 'SIGSTOP');
      sender.send({ op: 'send', to: 'recipient', data: 'during the freeze', ref: 's1' });
      const refused = await sender.next((f) => f.ref === 's1');
      assert.deepEqual([refused.op, refused.code], ['err', 'E_CLUSTER_UNAVAILABLE']);
      assert.match(String(refused.message), /may or may not be stored/);
      // Redis runs the STORE it was sent once it resumes; nobody heard its answer.
      process.kill(redis.pid!, 'SIGCONT');
      const [msg] = await nextMsgs(recipient, 1, 5000);
      assert.equal(msg!.data, 'during the freeze');
      for (const client of [sender, recipient]) client.close();
    });
  });

  test('an ack Redis did not answer in time but ran: the message waiting for room in the window still comes, without a reconnection', async () => {
    await onFreezableRedis('freeze-ack:', { websocket: { delivery: { ack_timeout: 30, max_backoff: 60, max_inflight_per_user: 1 } } }, shortFreeze, async (node, redis) => {
      const sender = await member(node.port, 'sender');
      const recipient = await member(node.port, 'recipient');
      for (const data of ['M1', 'M2']) {
        sender.send({ op: 'send', to: 'recipient', data, ref: data });
        await sender.next((f) => f.ref === data);
      }
      const [first] = await nextMsgs(recipient, 1);
      process.kill(redis.pid!, 'SIGSTOP');
      recipient.send({ op: 'ack', id: first!.id });
      await new Promise((resolve) => setTimeout(resolve, 1500));
      process.kill(redis.pid!, 'SIGCONT');
      assert.deepEqual((await nextMsgs(recipient, 1, 8000)).map((m) => m.data), ['M2']);
      for (const client of [sender, recipient]) client.close();
    });
  });

  test('a sweep Redis did not answer in time but ran: the message it put back to wait is delivered again, without a reconnection', async () => {
    await onFreezableRedis('freeze-sweep:', { websocket: { delivery: { ack_timeout: 1, max_backoff: 2 } } }, shortFreeze, async (node, redis) => {
      const sender = await member(node.port, 'sender');
      const recipient = await member(node.port, 'recipient');
      sender.send({ op: 'send', to: 'recipient', data: 'hello', ref: 'r' });
      await sender.next((f) => f.ref === 'r');
      const [first] = await nextMsgs(recipient, 1);
      // Frozen across the ack deadline (1 s after the delivery): the sweep at the deadline times out.
      await new Promise((resolve) => setTimeout(resolve, 700));
      process.kill(redis.pid!, 'SIGSTOP');
      await new Promise((resolve) => setTimeout(resolve, 1500));
      process.kill(redis.pid!, 'SIGCONT');
      const [again] = await nextMsgs(recipient, 1, 8000);
      assert.equal(again!.id, first!.id);
      for (const client of [sender, recipient]) client.close();
    });
  });

  test('a connection whose CONNECT Redis did not answer in time but ran: the waiting message it claimed comes once Redis answers, not at its ack deadline', async () => {
    await onFreezableRedis('freeze-connect:', { websocket: { delivery: { ack_timeout: 30, max_backoff: 60 } } }, shortFreeze, async (node, redis) => {
      const sender = await member(node.port, 'sender');
      sender.send({ op: 'send', to: 'late', data: 'waited', ref: 'w' });
      assert.equal((await sender.next((f) => f.ref === 'w')).op, 'ack');
      process.kill(redis.pid!, 'SIGSTOP');
      // Welcomed once CONNECT times out, with nothing pending as far as the node knows.
      const late = await member(node.port, 'late');
      assert.equal(late.welcome.pending, 0);
      // Redis runs the CONNECT it was sent once it resumes: it claims the message; nobody hears of it.
      process.kill(redis.pid!, 'SIGCONT');
      const [msg] = await nextMsgs(late, 1, 8000);
      assert.equal(msg!.data, 'waited');
      for (const client of [sender, late]) client.close();
    });
  });

  test('a pub to a history group that Redis did not answer in time is refused saying it may have been published, not that nothing happened', async () => {
    await onFreezableRedis('freeze-pub:', { websocket: { history: [{ pattern: 'room.*', size: 100 }] } }, shortFreeze, async (node, redis) => {
      const client = await member(node.port, 'poster');
      await joinGroup(client, 'room.frozen');
      process.kill(redis.pid!, 'SIGSTOP');
      client.send({ op: 'pub', group: 'room.frozen', data: 'hello?', ref: 'p1' });
      const refused = await client.next((f) => f.ref === 'p1');
      assert.deepEqual([refused.op, refused.code], ['err', 'E_CLUSTER_UNAVAILABLE']);
      assert.match(String(refused.message), /may or may not have been published/);
      client.close();
    });
  });

  // A review's chaos runs: a pub acked as it was handed to Redis, frozen, never reached another node.
  test('a pub is acked once Redis took it: into a frozen Redis it gets E_CLUSTER_UNAVAILABLE (delivered here only), not an ack', async () => {
    await onFreezableRedis('freeze-pub:', {}, shortFreeze, async (node, redis) => {
      const here = await member(node.port, 'here', ['hall']);
      const publisher = await member(node.port, 'publisher');
      publisher.send({ op: 'pub', group: 'hall', data: 0, ref: 'p0' });
      assert.equal((await publisher.next((f) => f.ref === 'p0')).op, 'ack', 'acked once Redis answered');
      process.kill(redis.pid!, 'SIGSTOP');
      publisher.send({ op: 'pub', group: 'hall', data: 1, ref: 'p1' });
      const refused = await publisher.next((f) => f.ref === 'p1');
      assert.deepEqual([refused.op, refused.code], ['err', 'E_CLUSTER_UNAVAILABLE']);
      assert.match(String(refused.message), /delivered to the members on this node/);
      assert.deepEqual((await nextMsgs(here, 2)).map((m) => m.data), [0, 1], 'this node\'s members have it');
      process.kill(redis.pid!, 'SIGCONT');
    });
  });
});

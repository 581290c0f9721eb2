/**
 * A script runs alone in Redis, so what one may do is bounded: a user's backlog is claimed 500
 * messages a script (CONNECT, then PUMP until none is left), not the whole window at once (a
 * review's 10,000 waiting messages held every node's commands 193 ms in one CONNECT).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { CONNECT, PUMP } from '../src/cluster/window-scripts.js';
import { member } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { nextMsgs, until } from './helpers/messaging.js';
import { announceSkip } from './helpers/redis.js';
import { watchCommands } from './helpers/script-work.js';

const skip = announceSkip('cluster-backlog-bounds.test');
const sha = (source: string): string => createHash('sha1').update(source).digest('hex');

describe('a large backlog in cluster mode', { skip, timeout: 90_000 }, () => {
  const cluster = clusterFixture({ nodes: { node: { prefix: 'bounds:', extra: { websocket: { delivery: { ack_timeout: 60 } } }, inProcess: true } } });

  test('1,200 waiting messages are claimed in scripts of at most 500, and arrive whole and in order', async () => {
    const TOTAL = 1200;
    const sender = await member(cluster.nodes.node.port, 'sender');
    for (let i = 0; i < TOTAL; i++) sender.send({ op: 'send', to: 'away', data: i, ref: `s${i}` });
    for (let i = 0; i < TOTAL; i++) assert.equal((await sender.next((f) => f.ref === `s${i}`)).op, 'ack');

    const runs: string[] = [];
    const unwatch = await watchCommands(cluster.redis.url, (args) => {
      if (args[0]?.toLowerCase() === 'evalsha' && (args[1] === sha(CONNECT) || args[1] === sha(PUMP))) runs.push(args[1] === sha(CONNECT) ? 'CONNECT' : 'PUMP');
    });
    try {
      const away = await member(cluster.nodes.node.port, 'away');
      assert.equal(away.welcome.pending, TOTAL);
      const got = await nextMsgs(away, TOTAL, 20_000);
      assert.deepEqual(got.map((m) => m.data), Array.from({ length: TOTAL }, (_, i) => i), 'every message, in order');
      // 500 + 500 + 200, and a last PUMP may find nothing left.
      // The monitor's feed may trail the deliveries a little.
      await until(() => (runs.filter((r) => r === 'PUMP').length >= 2 ? true : undefined), `two PUMPs after the CONNECT: ${runs.join(' ')}`, 2000).catch(() => undefined);
      assert.equal(runs[0], 'CONNECT');
      assert.ok(runs.filter((r) => r === 'PUMP').length >= 2, `claimed over several scripts: ${runs.join(' ')}`);
      away.close();
    } finally {
      unwatch();
      sender.close();
    }
  });

  // A review's reconnect mid-chain got 1001-1500 (claimed by its CONNECT) before 1-1000 (in flight).
  test('a reconnect while the backlog is claimed script by script gets what was in flight first, then the rest, in order', async () => {
    const TOTAL = 2000; // at most CONNECT's listing of what is in flight, however far the chain got
    const sender = await member(cluster.nodes.node.port, 'sender2');
    for (let i = 0; i < TOTAL; i++) sender.send({ op: 'send', to: 'hasty', data: i, ref: `h${i}` });
    for (let i = 0; i < TOTAL; i++) await sender.next((f) => f.ref === `h${i}`);
    const first = await member(cluster.nodes.node.port, 'hasty');
    await nextMsgs(first, 1);
    first.close();
    await first.closed;
    await new Promise((resolve) => setTimeout(resolve, 200));
    const again = await member(cluster.nodes.node.port, 'hasty');
    const got = (await nextMsgs(again, TOTAL, 20_000)).map((m) => m.data as number);
    assert.deepEqual(got, Array.from({ length: TOTAL }, (_, i) => i), 'every message once, oldest first');
    again.close();
    sender.close();
  });
});

describe('a full window in cluster mode', { skip, timeout: 60_000 }, () => {
  const cluster = clusterFixture({ nodes: { node: { prefix: 'full:', extra: { websocket: { delivery: { ack_timeout: 60, max_inflight_per_user: 50 } } }, inProcess: true } } });

  // A user who acks two and is sent two, over and over, made each cycle read every message in flight.
  test('is counted again from what is in flight only when its count is out of step, at most once a second, however often it fills', async () => {
    const sender = await member(cluster.nodes.node.port, 'filler');
    const slow = await member(cluster.nodes.node.port, 'slow');
    let sent = 0;
    const send = async (): Promise<void> => {
      const ref = `f${sent++}`;
      sender.send({ op: 'send', to: 'slow', data: sent, ref });
      assert.equal((await sender.next((f) => f.ref === ref)).op, 'ack');
    };
    for (let i = 0; i < 50; i++) await send();
    const inFlight = (await nextMsgs(slow, 50)).map((m) => m.id as string);

    let recounts = 0;
    const unwatch = await watchCommands(cluster.redis.url, (args) => {
      if (args[0]?.toLowerCase() === 'zrange' && args[1] === 'full:qf:slow' && args[3] === '-1') recounts++;
    });
    const started = Date.now();
    const takeOne = async (): Promise<void> => void inFlight.push(...(await nextMsgs(slow, 1)).map((m) => m.id as string));
    try {
      await send(); // the window is full: it waits (P wb:USER)
      for (let cycle = 0; cycle < 20; cycle++) {
        // Two acks free two places: the one waiting takes the first, the next send the second,
        // and the send after finds the window full with nothing waiting: a count of the window.
        slow.send({ op: 'ack', ids: [inFlight.shift(), inFlight.shift()] });
        await takeOne();
        await send();
        await takeOne();
        await send();
      }
      const seconds = (Date.now() - started) / 1000;
      assert.equal(recounts, 0, `the count in step with what is in flight is not made again (${recounts} in ${seconds.toFixed(1)} s, 20 fills)`);

      // Out of step (a count not kept by a node of an older version): counted again from what is in flight.
      const store = cluster.redis.client();
      for (let cycle = 0; cycle < 3; cycle++) {
        slow.send({ op: 'ack', ids: [inFlight.shift(), inFlight.shift()] });
        await takeOne();
        await send();
        await takeOne();
        await new Promise((resolve) => setTimeout(resolve, 1050)); // past the once-a-second bound
        await store.hset('full:wf:slow', 'n', 51); // full either way, but not what is in flight
        await send();
      }
      // The monitor's feed may trail; on a loaded machine a cycle may come within the once-a-second bound.
      await until(() => (recounts >= 3 ? true : undefined), 'three counts', 2000).catch(() => undefined);
      assert.ok(recounts >= 2, `a full window out of step is counted again (${recounts} of 3)`);
    } finally {
      unwatch();
      sender.close();
      slow.close();
    }
  });
});

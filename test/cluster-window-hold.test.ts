/**
 * A user's messages that waited behind a hold its node never lifted (a node that died between a
 * reconnect's CONNECT and its PUMP: P wb:USER set for two command_timeouts) still go out, in
 * order, once the hold has lapsed: at the user's next ack, or ahead of the next message sent to
 * it. Before, they stayed waiting (no ack pumped them, and the next message overtook them) until
 * the user's next connection, or their expiry. The hold is set here by hand, as that node's
 * CONNECT left it, on a real node and a private Redis. And when many of them wait at once, one
 * PUMP at a time per user claims them, not one per message.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { before, describe, test } from 'node:test';
import { PUMP } from '../src/cluster/window-scripts.js';
import { sleep } from './helpers/broker.js';
import { member, type TestClient } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { nextMsgs, settle } from './helpers/messaging.js';
import { announceSkip } from './helpers/redis.js';
import { watchCommands } from './helpers/script-work.js';

const skip = announceSkip('cluster-window-hold.test');
const sha = (source: string): string => createHash('sha1').update(source).digest('hex');

describe("a user's messages held behind a dead node's CONNECT", { skip, timeout: 60_000 }, () => {
  // Deadlines minutes away: no redelivery explains what arrives.
  const cluster = clusterFixture({ nodes: { node: { prefix: 'wh:', extra: { websocket: { delivery: { ack_timeout: 300, max_backoff: 300 } } } } }, store: true, stop: 'graceful' });
  let sender: TestClient;
  before(async () => {
    sender = await member(cluster.nodes.node.port, 'sender');
    cluster.open.push(sender);
  });

  async function send(to: string, data: number): Promise<void> {
    sender.send({ op: 'send', to, data, ref: `${to}${data}` });
    assert.equal((await sender.next((f) => f.ref === `${to}${data}`, 10_000)).op, 'ack');
  }

  /** `user` online with message 0 in flight, then 1 and 2 sent while its hold lasts (they wait); returns once the hold has lapsed. */
  async function heldThenLapsed(user: string): Promise<{ reader: TestClient; first: string }> {
    const reader = await member(cluster.nodes.node.port, user);
    await send(user, 0);
    const [first] = await nextMsgs(reader, 1);
    await cluster.store.set(`wh:wb:${user}`, '1', 'PX', 1000, 'NX');
    await send(user, 1);
    await send(user, 2);
    await settle(reader);
    assert.equal(reader.frames.filter((f) => f.op === 'msg' || f.op === 'batch').length, 0, 'held while the hold lasts');
    await sleep(1300);
    assert.equal(await cluster.store.exists(`wh:wb:${user}`), 0, 'the hold has lapsed');
    return { reader, first: first!.id as string };
  }

  test("the user's next ack sends what waited", async () => {
    const { reader, first } = await heldThenLapsed('ann');
    reader.send({ op: 'ack', id: first });
    assert.deepEqual((await nextMsgs(reader, 2, 10_000)).map((m) => m.data), [1, 2]);
    reader.close();
  });

  test('the next message sent to the user goes behind what waited, not ahead of it', async () => {
    const { reader } = await heldThenLapsed('bob');
    await send('bob', 3);
    assert.deepEqual((await nextMsgs(reader, 3, 10_000)).map((m) => m.data), [1, 2, 3]);
    reader.close();
  });
});

describe("many of a user's messages made waiting by one sweep", { skip, timeout: 60_000 }, () => {
  const cluster = clusterFixture({ nodes: { node: { prefix: 'ps:' } }, stop: 'graceful' });

  test('300 scheduled messages falling due together are claimed by one or two PUMPs, not one each, and arrive in order', async () => {
    const sender = await member(cluster.nodes.node.port, 'sender');
    const reader = await member(cluster.nodes.node.port, 'reader');
    const at = Date.now() + 2000;
    for (let i = 0; i < 300; i++) sender.send({ op: 'send', to: 'reader', data: i, at, ref: `s${i}` });
    for (let i = 0; i < 300; i++) await sender.next((f) => f.ref === `s${i}`, 10_000);
    // Each ROUTE_USER of the sweep's 300 sees the others waiting unmarked and asks for a PUMP:
    // the node runs one at a time per user (before, 300 PUMPs where one claimed them all).
    let pumps = 0;
    const unwatch = await watchCommands(cluster.redis.url, (args) => {
      if (args[0]?.toLowerCase() === 'evalsha' && args[1] === sha(PUMP)) pumps++;
    });
    const got = (await nextMsgs(reader, 300, 15_000)).map((m) => m.data);
    await sleep(300);
    unwatch();
    assert.deepEqual(got, Array.from({ length: 300 }, (_, i) => i));
    assert.ok(pumps >= 1 && pumps <= 2, `${pumps} PUMP scripts for one sweep's 300 messages of one user`);
    sender.close();
    reader.close();
  });
});

/**
 * Messages another node routes to a user while this node is cut off from Redis reach the
 * user's connections here that stay open once Redis is back, not at their ack deadlines (found
 * by a chaos review of 2026-12-07):
 * - within presence_ttl the other node still takes this one as alive, claims the message and
 *   publishes its delivery record to this node, which nobody hears (its subscriber is down);
 * - past presence_ttl, for a user also connected elsewhere, the message is claimed for the other
 *   node's connection only.
 * The node holds its open connections from the cut, and the rescan hands each what was in
 * flight to its user that this node did not hand out, ahead of what comes after.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { member } from './helpers/client.js';
import { settle, unreadData } from './helpers/messaging.js';
import { announceSkip, nodeConfig, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { startProcess, type ServerProcess } from './helpers/server.js';
import { tcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';

const skip = announceSkip('cluster-outage-routed-meanwhile.test');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const LONG = { websocket: { delivery: { ack_timeout: 300, max_backoff: 300 } } };

describe('messages routed to a node while it is cut off from Redis', { skip, timeout: 60_000 }, () => {
  let redis: PrivateRedis;
  let proxy: TcpProxy;
  let cutOff: ServerProcess;
  let other: ServerProcess;
  before(async () => {
    redis = await startPrivateRedis();
    proxy = await tcpProxy(redis.port);
    cutOff = await startProcess(nodeConfig(`redis://127.0.0.1:${proxy.port}`, 'rm:', 1, LONG));
    other = await startProcess(nodeConfig(redis.url, 'rm:', 1, LONG));
  });
  after(async () => {
    for (const node of [cutOff, other]) if (node?.child.exitCode === null) await node.stop('SIGKILL');
    await proxy?.close();
    await redis?.stop();
  });

  const sendFive = async (sender: Awaited<ReturnType<typeof member>>, to: string): Promise<void> => {
    for (let i = 0; i < 5; i++) sender.send({ op: 'send', to, data: i, ref: `r${i}` });
    for (let i = 0; i < 5; i++) assert.equal((await sender.next((f) => f.ref === `r${i}`, 10_000)).op, 'ack');
  };

  test('a cut shorter than presence_ttl: the connection open throughout gets them once Redis is back', async () => {
    const reader = await member(cutOff.port, 'reader');
    const sender = await member(other.port, 'sender');
    await sleep(300);
    proxy.refuse = true;
    await sleep(300);
    await sendFive(sender, 'reader'); // the other node still takes the reader as online: claimed, published to nobody
    await sleep(700);
    proxy.refuse = false;
    await sleep(3000);
    await settle(reader);
    assert.deepEqual(unreadData(reader), [0, 1, 2, 3, 4]);
    sender.close();
    reader.close();
  });

  test('a cut past presence_ttl, the user also connected on the other node: the connection here gets them once Redis is back', async () => {
    const here = await member(cutOff.port, 'both');
    const there = await member(other.port, 'both');
    const sender = await member(other.port, 'sender2');
    await sleep(300);
    proxy.refuse = true;
    await sleep(4500); // past presence_ttl (3 s): routed to the other node's connection only
    await sendFive(sender, 'both');
    proxy.refuse = false;
    await sleep(3000);
    await settle(here);
    await settle(there);
    assert.deepEqual(unreadData(there), [0, 1, 2, 3, 4]);
    assert.deepEqual(unreadData(here), [0, 1, 2, 3, 4]);
    sender.close();
    here.close();
    there.close();
  });
});

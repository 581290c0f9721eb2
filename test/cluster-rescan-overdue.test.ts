/**
 * A message this node handed to a connection open through an outage, whose ack deadline passed
 * during the outage (no sweep ran: Redis out of reach), is redelivered once, by the sweep that
 * finds it overdue: the rescan does not hand it too (a review of 2026-12-07 saw two copies
 * within milliseconds). Real node process; it reaches its private Redis through a TCP proxy.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { member } from './helpers/client.js';
import { nextMsgs, unreadData, untilTrue } from './helpers/messaging.js';
import { announceSkip, nodeConfig, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { startProcess, type ServerProcess } from './helpers/server.js';
import { tcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';

const skip = announceSkip('cluster-rescan-overdue.test');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('an outage past a delivery ack deadline', { skip, timeout: 60_000 }, () => {
  let redis: PrivateRedis;
  let proxy: TcpProxy;
  let node: ServerProcess;
  before(async () => {
    redis = await startPrivateRedis();
    proxy = await tcpProxy(redis.port);
    node = await startProcess(nodeConfig(`redis://127.0.0.1:${proxy.port}`, 'rd:', 1, { websocket: { delivery: { ack_timeout: 1, max_backoff: 20, backoff_multiplier: 8 } } }));
  });
  after(async () => {
    if (node?.child.exitCode === null) await node.stop('SIGKILL');
    await proxy?.close();
    await redis?.stop();
  });

  test('the connection open throughout gets the overdue message once, not twice', async () => {
    const reader = await member(node.port, 'reader');
    const sender = await member(node.port, 'sender');
    sender.send({ op: 'send', to: 'reader', data: 'M', ref: 'r' });
    assert.equal((await sender.next((f) => f.ref === 'r', 10_000)).op, 'ack');
    const [first] = await nextMsgs(reader, 1);
    assert.equal(first!.data, 'M');
    proxy.refuse = true;
    await sleep(2500); // past the ack deadline (1 s); no sweep reaches Redis
    proxy.refuse = false;
    await untilTrue('a copy after the outage', () => unreadData(reader).length > 0, 15_000);
    await sleep(500); // less than the next redelivery's backoff (8 s)
    assert.deepEqual(unreadData(reader), ['M']);
    sender.close();
    reader.close();
  });
});

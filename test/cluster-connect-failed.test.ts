/**
 * A connection whose CONNECT fails while its node stays up (an error reply, a timeout) is
 * welcomed with pending 0, and what another node routed to its user while that CONNECT ran,
 * held for it meanwhile, goes to it then: it was dropped, and reached the connection only at the
 * messages' ack deadlines (found by a review of 2026-12-07). Real node processes; the node
 * reaches its private Redis through a TCP proxy that slows its commands, so that the CONNECT is
 * in flight while the routes arrive.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import { member } from './helpers/client.js';
import { nextMsgs } from './helpers/messaging.js';
import { announceSkip, nodeConfig, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { startProcess, type ServerProcess } from './helpers/server.js';
import { tcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';

const skip = announceSkip('cluster-connect-failed.test');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
// Deadlines minutes away: no redelivery explains what arrives.
const LONG = { websocket: { delivery: { ack_timeout: 300, max_backoff: 300 } } };

describe('a connection whose CONNECT fails while its node stays up', { skip, timeout: 60_000 }, () => {
  let redis: PrivateRedis;
  let proxy: TcpProxy;
  let node: ServerProcess;
  let other: ServerProcess;
  let store: Redis;
  before(async () => {
    redis = await startPrivateRedis();
    proxy = await tcpProxy(redis.port);
    node = await startProcess(nodeConfig(`redis://127.0.0.1:${proxy.port}`, 'cf:', 1, LONG));
    other = await startProcess(nodeConfig(redis.url, 'cf:', 1, LONG));
    store = redis.client();
  });
  after(async () => {
    for (const server of [node, other]) if (server?.child.exitCode === null) await server.stop('SIGKILL');
    await store?.quit();
    await proxy?.close();
    await redis?.stop();
  });

  test('gets at once what was routed to its user while the CONNECT ran', async () => {
    const first = await member(node.port, 'reader');
    const sender = await member(other.port, 'sender');
    await sleep(300);
    // Only CONNECT reads this key (the queue index's count of scheduled messages): of the wrong type, it fails.
    await store.hset('cf:qs:reader', 'x', '1');
    // The node's commands reach Redis 400 ms late; the other node's routes, and its records to this node, do not.
    proxy.delayUpstreamMs = 400;
    const opening = member(node.port, 'reader');
    await sleep(150);
    for (let i = 0; i < 3; i++) sender.send({ op: 'send', to: 'reader', data: i, ref: `r${i}` });
    for (let i = 0; i < 3; i++) await sender.next((f) => f.ref === `r${i}`, 10_000);
    assert.deepEqual((await nextMsgs(first, 3)).map((m) => m.data), [0, 1, 2], 'the open connection has them');
    const late = await opening;
    proxy.delayUpstreamMs = 0;
    assert.equal(late.welcome.pending, 0, 'welcomed without a backlog');
    assert.ok(node.logs.some((l) => /WRONGTYPE/.test(JSON.stringify(l))), 'its CONNECT failed');
    assert.deepEqual((await nextMsgs(late, 3, 3000)).map((m) => m.data), [0, 1, 2], 'the new one gets them too, at once');
    await store.del('cf:qs:reader');
    first.close();
    late.close();
    sender.close();
  });
});

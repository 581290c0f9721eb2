/**
 * Review of 536ee40: a rescan whose CONNECT fails puts its connections back in `unlisted`
 * whether or not the node is up. Up, what is routed to the connection from then on reaches it
 * at once; the next rescan (a heartbeat that finds the node forgotten, or a timed-out SWEEP's
 * follow-up: no outage needed) lists what is in flight to it, and hands it those again.
 * The rescan's CONNECT is made to fail here by a key of the wrong type that only CONNECT reads
 * (P qs:USER, read by indexed()); in production: an OOM or BUSY reply, or a command timeout on
 * a Redis slow after an outage (every node rescanning every user at once).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import { member, type TestClient } from './helpers/client.js';
import { nextMsgs, settle } from './helpers/messaging.js';
import { announceSkip, nodeConfig, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { startProcess, type ServerProcess } from './helpers/server.js';
import { tcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';

const skip = announceSkip('review-rescan-fail.test');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function received(client: TestClient): number[] {
  const out: number[] = [];
  for (const f of client.frames) {
    if (f.op === 'msg') out.push(f.data as number);
    if (f.op === 'batch') for (const m of f.msgs as Array<{ data: number }>) out.push(m.data);
  }
  return out;
}

describe('review: a rescan that failed while the node stayed up', { skip, timeout: 120_000 }, () => {
  let redis: PrivateRedis;
  let proxy: TcpProxy;
  let node: ServerProcess;
  let store: Redis;
  before(async () => {
    redis = await startPrivateRedis();
    proxy = await tcpProxy(redis.port);
    node = await startProcess(nodeConfig(`redis://127.0.0.1:${proxy.port}`, 'rf:', 1, { websocket: { delivery: { ack_timeout: 300, max_backoff: 300 } } }));
    store = redis.client();
  });
  after(async () => {
    if (node?.child.exitCode === null) await node.stop('SIGKILL');
    await store?.quit();
    await proxy?.close();
    await redis?.stop();
  });

  test('the next rescan hands the connection nothing it already has', async () => {
    const sender = await member(node.port, 'sender');
    const first = await member(node.port, 'reader');
    await sleep(300);
    proxy.refuse = true;
    await sleep(800);
    const late = await member(node.port, 'reader'); // unlisted
    assert.equal(late.welcome.pending, 0);
    await store.hset('rf:qs:reader', 'x', '1'); // the rescan's CONNECT for reader fails (WRONGTYPE)
    proxy.refuse = false;
    await sleep(3000); // resynced, rescan failed
    const failed = node.logs.some((l) => /WRONGTYPE/.test(JSON.stringify(l)));
    assert.ok(failed, 'the rescan of reader failed');
    await store.del('rf:qs:reader');
    for (let i = 0; i < 5; i++) sender.send({ op: 'send', to: 'reader', data: i, ref: `r${i}` });
    for (let i = 0; i < 5; i++) await sender.next((f) => f.ref === `r${i}`, 10_000);
    assert.deepEqual((await nextMsgs(late, 5)).map((m) => m.data), [0, 1, 2, 3, 4], 'routed to it as to any connection');
    // A rescan without an outage: the heartbeat finds the node forgotten (resync(false)).
    const [id] = (await store.zrange('rf:nodes', '0', '-1')) as string[];
    await store.zrem('rf:nodes', String(id));
    await sleep(2500);
    await settle(late);
    const got = received(late);
    console.log(`late got, after the 5 it was routed: ${JSON.stringify(got)}`);
    sender.close();
    first.close();
    late.close();
    assert.deepEqual(got, [], 'nothing more: each once');
  });
});

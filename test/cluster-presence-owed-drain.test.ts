/**
 * A connection whose CONNECT fails while its node stays up has its presence written after
 * (presenceOwed, connection-backlogs.ts). Not once the node's drain began: the drain has left
 * the cluster (its forget deleted the node's presence and took it out of P nodes) and its
 * closes write nothing, so a count written then names a node no heartbeat will forget again,
 * and stays in P pu:USER and P nk:NODE for good should the process not say its farewell
 * (killed past shutdown_timeout). Found by a review of 2026-12-07. Real node processes; the
 * draining node reaches its private Redis through a TCP proxy that slows its commands, so that
 * its CONNECT fails after the drain's forget ran. The same for the count a CONNECT's answer
 * writes again when its connection closed meanwhile (older than presenceOwed).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import { connect, member } from './helpers/client.js';
import { announceSkip, nodeConfig, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { startProcess, type ServerProcess } from './helpers/server.js';
import { tcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';

const skip = announceSkip('cluster-presence-owed-drain.test');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
// A long drain: the connection is still open when its CONNECT fails.
const DRAINING = { websocket: { server: { shards: 1, drain_window: 10, shutdown_timeout: 20 }, delivery: { ack_timeout: 300, max_backoff: 300 } } };

describe('a CONNECT that fails during the drain', { skip, timeout: 60_000 }, () => {
  let redis: PrivateRedis;
  let proxy: TcpProxy;
  let node: ServerProcess;
  let witness: ServerProcess;
  let store: Redis;
  before(async () => {
    redis = await startPrivateRedis();
    proxy = await tcpProxy(redis.port);
    node = await startProcess(nodeConfig(`redis://127.0.0.1:${proxy.port}`, 'pd:', 1, DRAINING));
    // Its heartbeats forget the nodes it finds dead.
    witness = await startProcess(nodeConfig(redis.url, 'pd:', 1));
    store = redis.client();
  });
  after(async () => {
    for (const server of [node, witness]) if (server?.child.exitCode === null) await server.stop('SIGKILL');
    await store?.quit();
    await proxy?.close();
    await redis?.stop();
  });

  test('writes no presence for the node that left the cluster', async () => {
    const probe = await member(node.port, 'probe');
    const id = String(probe.welcome.sid).split('.')[0]!;
    probe.close();
    // The drain closes its sockets one after another over drain_window, in the order they opened: these first.
    const fillers = await Promise.all(Array.from({ length: 20 }, () => member(node.port, 'filler')));
    await sleep(200);
    // Only CONNECT reads this key: of the wrong type, it fails (after its presence write, which the drain's forget deletes).
    await store.hset('pd:qs:ghost', 'x', '1');
    proxy.delayUpstreamMs = 600;
    const opening = member(node.port, 'ghost');
    await sleep(200);
    const stopped = node.stop('SIGTERM');
    for (let i = 0; i < 300 && (await store.zscore('pd:nodes', id)) !== null; i++) await sleep(10);
    assert.equal(await store.zscore('pd:nodes', id), null, 'the draining node left the cluster');
    await store.del('pd:qs:ghost');
    proxy.delayUpstreamMs = 0;
    const ghost = await opening;
    assert.equal(ghost.welcome.pending, 0, 'welcomed without a backlog');
    assert.ok(node.logs.some((l) => /WRONGTYPE/.test(JSON.stringify(l))), 'its CONNECT failed');
    await sleep(1000);
    assert.equal(ghost.frames.some((f) => f.op === 'close'), false);
    assert.equal(await store.hget('pd:pu:ghost', id), null, 'no presence written while draining');
    // Killed before its farewell (pm2 past kill_timeout): nothing of it may stay behind.
    node.child.kill('SIGKILL');
    await stopped;
    await sleep(4000);
    assert.equal(await store.hget('pd:pu:ghost', id), null, 'nothing of the node in P pu:USER');
    assert.equal(await store.exists(`pd:nk:${id}`), 0, 'nor its key list');
    ghost.close();
    for (const filler of fillers) filler.close();
  });

  test('a CONNECT answered after the drain began, for a connection closed meanwhile, writes no count either', async () => {
    const node2 = await startProcess(nodeConfig(`redis://127.0.0.1:${proxy.port}`, 'pd:', 1, DRAINING));
    try {
      // Other connections of the user on the node, open for the drain's spread: the count written would be theirs.
      const others = await Promise.all(Array.from({ length: 20 }, () => member(node2.port, 'many')));
      const id = String(others[0]!.welcome.sid).split('.')[0]!;
      await sleep(200);
      proxy.delayUpstreamMs = 600;
      const late = await connect(node2.port, { query: 'user=many' });
      await sleep(200);
      const stopped = node2.stop('SIGTERM');
      await sleep(100);
      // Closed before its CONNECT is answered (the drain's own closes write nothing).
      late.close();
      await late.closed;
      for (let i = 0; i < 300 && (await store.zscore('pd:nodes', id)) !== null; i++) await sleep(10);
      assert.equal(await store.zscore('pd:nodes', id), null, 'the draining node left the cluster');
      proxy.delayUpstreamMs = 0;
      await sleep(1000);
      assert.equal(await store.hget('pd:pu:many', id), null, 'no presence written while draining');
      node2.child.kill('SIGKILL');
      await stopped;
      for (const other of others) other.close();
    } finally {
      if (node2.child.exitCode === null) node2.child.kill('SIGKILL');
    }
  });
});

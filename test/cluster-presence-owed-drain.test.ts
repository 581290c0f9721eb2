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
import { describe, test } from 'node:test';
import { sleep } from './helpers/broker.js';
import { connect, member } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { announceSkip, nodeConfig } from './helpers/redis.js';
import { startProcess } from './helpers/server.js';

const skip = announceSkip('cluster-presence-owed-drain.test');
// A long drain: the connection is still open when its CONNECT fails.
const DRAINING = { websocket: { server: { shards: 1, drain_window: 10, shutdown_timeout: 20 }, delivery: { ack_timeout: 300, max_backoff: 300 } } };

describe('a CONNECT that fails during the drain', { skip, timeout: 60_000 }, () => {
  const cluster = clusterFixture({
    nodes: {
      node: { prefix: 'pd:', extra: DRAINING, throughProxy: true },
      // Its heartbeats forget the nodes it finds dead.
      witness: { prefix: 'pd:' },
    },
    store: true,
  });

  test('writes no presence for the node that left the cluster', async () => {
    const probe = await member(cluster.nodes.node.port, 'probe');
    const id = String(probe.welcome.sid).split('.')[0]!;
    probe.close();
    // The drain closes its sockets one after another over drain_window, in the order they opened: these first.
    const fillers = await Promise.all(Array.from({ length: 20 }, () => member(cluster.nodes.node.port, 'filler')));
    await sleep(200);
    // Only CONNECT reads this key: of the wrong type, it fails (after its presence write, which the drain's forget deletes).
    await cluster.store.hset('pd:qs:ghost', 'x', '1');
    cluster.proxy.delayUpstreamMs = 600;
    const opening = member(cluster.nodes.node.port, 'ghost');
    await sleep(200);
    const stopped = cluster.nodes.node.stop('SIGTERM');
    for (let i = 0; i < 300 && (await cluster.store.zscore('pd:nodes', id)) !== null; i++) await sleep(10);
    assert.equal(await cluster.store.zscore('pd:nodes', id), null, 'the draining node left the cluster');
    await cluster.store.del('pd:qs:ghost');
    cluster.proxy.delayUpstreamMs = 0;
    const ghost = await opening;
    assert.equal(ghost.welcome.pending, 0, 'welcomed without a backlog');
    assert.ok(cluster.nodes.node.logs.some((l) => /WRONGTYPE/.test(JSON.stringify(l))), 'its CONNECT failed');
    await sleep(1000);
    assert.equal(ghost.frames.some((f) => f.op === 'close'), false);
    assert.equal(await cluster.store.hget('pd:pu:ghost', id), null, 'no presence written while draining');
    // Killed before its farewell (pm2 past kill_timeout): nothing of it may stay behind.
    cluster.nodes.node.child.kill('SIGKILL');
    await stopped;
    await sleep(4000);
    assert.equal(await cluster.store.hget('pd:pu:ghost', id), null, 'nothing of the node in P pu:USER');
    assert.equal(await cluster.store.exists(`pd:nk:${id}`), 0, 'nor its key list');
    ghost.close();
    for (const filler of fillers) filler.close();
  });

  test('a CONNECT answered after the drain began, for a connection closed meanwhile, writes no count either', async () => {
    const node2 = await startProcess(nodeConfig(`redis://127.0.0.1:${cluster.proxy.port}`, 'pd:', 1, DRAINING));
    try {
      // Other connections of the user on the node, open for the drain's spread: the count written would be theirs.
      const others = await Promise.all(Array.from({ length: 20 }, () => member(node2.port, 'many')));
      const id = String(others[0]!.welcome.sid).split('.')[0]!;
      await sleep(200);
      cluster.proxy.delayUpstreamMs = 600;
      const late = await connect(node2.port, { query: 'user=many' });
      await sleep(200);
      const stopped = node2.stop('SIGTERM');
      await sleep(100);
      // Closed before its CONNECT is answered (the drain's own closes write nothing).
      late.close();
      await late.closed;
      for (let i = 0; i < 300 && (await cluster.store.zscore('pd:nodes', id)) !== null; i++) await sleep(10);
      assert.equal(await cluster.store.zscore('pd:nodes', id), null, 'the draining node left the cluster');
      cluster.proxy.delayUpstreamMs = 0;
      await sleep(1000);
      assert.equal(await cluster.store.hget('pd:pu:many', id), null, 'no presence written while draining');
      node2.child.kill('SIGKILL');
      await stopped;
      for (const other of others) other.close();
    } finally {
      if (node2.child.exitCode === null) node2.child.kill('SIGKILL');
    }
  });
});

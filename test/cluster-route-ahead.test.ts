/**
 * A `send` for now in cluster mode has its route script sent right behind its STORE, without
 * waiting for the STORE's reply (src/cluster/intake.ts; delivery.before_commit): Redis runs
 * them in that order, so a message is delivered once, and only once stored. Real nodes on a
 * private Redis.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { member, type TestClient } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { announceSkip } from './helpers/redis.js';
import { ROUTE_USER } from '../src/cluster/window-scripts.js';

const skip = announceSkip('cluster-route-ahead.test');

describe('the route sent behind the store, in cluster mode', { skip, timeout: 60_000 }, () => {
  const cluster = clusterFixture({ nodes: { node: { prefix: 'ahead:', shards: 2, extra: { websocket: { delivery: { max_pending_per_user: 2, ack_timeout: 30, max_backoff: 60 } } }, inProcess: true } } });

  const sendTo = async (sender: TestClient, to: string, data: string): Promise<Record<string, unknown>> => {
    sender.send({ op: 'send', to, data, pri: 2, ref: data });
    return sender.next((f) => f.ref === data);
  };

  test('each message stored is delivered once; one the store refuses (E_QUEUE_FULL) is not delivered', async () => {
    const [sender, bob] = await Promise.all([member(cluster.nodes.node.port, 'sender'), member(cluster.nodes.node.port, 'bob')]);
    for (const data of ['one', 'two']) assert.equal((await sendTo(sender, 'bob', data)).op, 'ack');
    const refused = await sendTo(sender, 'bob', 'three');
    assert.deepEqual([refused.op, refused.code], ['err', 'E_QUEUE_FULL']);
    const got = [await bob.next((f) => f.op === 'msg'), await bob.next((f) => f.op === 'msg')];
    assert.deepEqual(got.map((m) => m.data), ['one', 'two']);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(bob.frames.filter((f) => f.op === 'msg'), [], 'nothing more: not the refused one, nothing twice');
    for (const m of got) bob.send({ op: 'ack', id: m.id });
    for (const c of [sender, bob]) c.close();
  });

  test("Redis's script cache flushed, the route's script back in it but not the STORE's: the STORE resent as text runs behind its route, and the message is routed again once stored", async () => {
    const [sender, carol] = await Promise.all([member(cluster.nodes.node.port, 'sender2'), member(cluster.nodes.node.port, 'carol')]);
    const client = cluster.redis.client();
    await client.script('FLUSH');
    await client.script('LOAD', ROUTE_USER);
    assert.equal((await sendTo(sender, 'carol', 'after-flush')).op, 'ack');
    const msg = await carol.next((f) => f.op === 'msg', 5000);
    assert.equal(msg.data, 'after-flush');
    carol.send({ op: 'ack', id: msg.id });
    for (const c of [sender, carol]) c.close();
  });
});

/**
 * `any` messages and a user's window in cluster mode (docs/messaging.md, "Delivery rules": the
 * window): an `any` goes only to a member whose user's window has room (src/cluster/
 * route-any-script.ts ROUTE_ANY), what no member has room for waits, in queue order, and goes as
 * acks free room (PUMP_GROUP); and a full recipient's queue never drops a LOW message that was
 * delivered and awaits its ack (scripts.ts STORE). Real nodes on a private Redis.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { member, type Frame, type TestClient } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { nextMsgs, settle, until } from './helpers/messaging.js';
import { scrape, total } from './helpers/prometheus.js';
import { announceSkip, nodeConfig } from './helpers/redis.js';
import { startInProcess } from './helpers/server.js';

const skip = announceSkip('cluster-any-window.test');

/** Messages (msg frames, or in batches) the client got and no test has read yet. */
const unread = (client: TestClient): Frame[] => client.frames.flatMap((f) => (f.op === 'batch' ? (f.msgs as Frame[]) : f.op === 'msg' ? [f] : []));
const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Acks `first`, then each message as it comes, until `total` came: their data, in arrival order. */
async function ackingUntil(client: TestClient, first: Frame[], total: number): Promise<unknown[]> {
  const seen = first.map((m) => m.data);
  for (const m of first) client.send({ op: 'ack', id: m.id });
  while (seen.length < total) {
    for (const m of await nextMsgs(client, 1)) {
      seen.push(m.data);
      client.send({ op: 'ack', id: m.id });
    }
  }
  return seen;
}

async function acked(client: TestClient, frame: Record<string, unknown>): Promise<Frame> {
  const ref = `r-${Math.random()}`;
  client.send({ ...frame, ref });
  return client.next((f) => f.ref === ref);
}

describe('`any` messages and the window in cluster mode (delivery.max_inflight_per_user 2)', { skip, timeout: 60_000 }, () => {
  const cluster = clusterFixture({
    nodes: { node: { prefix: 'anywin:', extra: { websocket: { delivery: { max_inflight_per_user: 2, ack_timeout: 30, max_backoff: 60 } } }, inProcess: true } },
    store: true,
  });

  test('a member joining a group with 6 waiting `any` messages gets 2, then the rest in order as it acks; a new one waits behind them', async () => {
    const boss = await member(cluster.nodes.node.port, 'boss');
    for (let n = 0; n < 6; n++) assert.equal((await acked(boss, { op: 'any', group: 'backlog', data: n })).op, 'ack');
    assert.equal(await cluster.store.zcard('anywin:qw:backlog'), 6, 'all 6 wait, indexed');
    const worker = await member(cluster.nodes.node.port, 'worker', ['backlog']);
    const first = await nextMsgs(worker, 2);
    assert.deepEqual(first.map((m) => m.data), [0, 1]);
    await pause(300);
    assert.deepEqual(unread(worker), [], 'no more than the window before an ack');
    assert.equal(await cluster.store.zcard('anywin:qw:backlog'), 4, 'the other 4 still wait, indexed');
    assert.equal((await acked(boss, { op: 'any', group: 'backlog', data: 6 })).op, 'ack');
    await pause(200);
    assert.deepEqual(unread(worker), [], 'the new one waits behind them');
    assert.deepEqual(await ackingUntil(worker, first, 7), [0, 1, 2, 3, 4, 5, 6]);
    await settle(worker);
    assert.equal(await cluster.store.zcard('anywin:qw:backlog'), 0);
    for (const c of [boss, worker]) c.close();
  });

  for (const strategy of ['round_robin', 'least_connections', 'weighted']) {
    test(`${strategy}: an \`any\` goes to the member with room, not to the one whose window its direct messages fill; it waits when neither has room, and goes once one acks`, async () => {
      const group = `crew-${strategy}`;
      const [boss, alice] = await Promise.all([member(cluster.nodes.node.port, `boss-${strategy}`), member(cluster.nodes.node.port, `alice-${strategy}`)]);
      const busy = await member(cluster.nodes.node.port, `busy-${strategy}`, [group]);
      const idle = await member(cluster.nodes.node.port, `idle-${strategy}`, [group]);
      for (const n of [0, 1]) assert.equal((await acked(alice, { op: 'send', to: `busy-${strategy}`, data: `direct${n}` })).op, 'ack');
      const direct = await nextMsgs(busy, 2);
      for (const n of [0, 1]) assert.equal((await acked(boss, { op: 'any', group, data: `task${n}`, strategy })).op, 'ack');
      assert.deepEqual((await nextMsgs(idle, 2)).map((m) => m.data), ['task0', 'task1']);
      await pause(300);
      assert.deepEqual(unread(busy), [], 'busy\'s window is full: it got no task');
      // Both windows full: the next task waits for room, and goes to whichever frees it first.
      assert.equal((await acked(boss, { op: 'any', group, data: 'task2', strategy })).op, 'ack');
      await pause(300);
      assert.deepEqual([unread(busy), unread(idle)], [[], []], 'nobody has room: it waits');
      busy.send({ op: 'ack', id: direct[0]!.id });
      assert.deepEqual((await nextMsgs(busy, 1)).map((m) => m.data), ['task2']);
      for (const c of [boss, alice, busy, idle]) c.close();
    });
  }

  test("an ack of someone else's message is E_UNKNOWN_ID and leaves it in flight to its owner", async () => {
    // The gauge is sampled once per metrics_collection_interval (1 s): each reading waits past one.
    const inflight = async (): Promise<number> => {
      await pause(1100);
      return total(await scrape(cluster.nodes.node.port), 'ocs_messages_inflight');
    };
    const [owner, stranger] = await Promise.all([member(cluster.nodes.node.port, 'owner'), member(cluster.nodes.node.port, 'stranger')]);
    assert.equal((await acked(stranger, { op: 'send', to: 'owner', data: 'mine' })).op, 'ack');
    const [msg] = await nextMsgs(owner, 1);
    const delivered = await inflight();
    stranger.send({ op: 'ack', id: msg!.id });
    assert.equal((await stranger.next((f) => f.op === 'err')).code, 'E_UNKNOWN_ID');
    assert.equal(await inflight(), delivered, 'still in flight');
    owner.send({ op: 'ack', id: msg!.id });
    assert.equal(await inflight(), delivered - 1);
    for (const c of [owner, stranger]) c.close();
  });
});

describe('a full recipient\'s queue in cluster mode keeps a LOW message it delivered (delivery.max_pending_per_user)', { skip, timeout: 60_000 }, () => {
  const cluster = clusterFixture({ store: true });

  test('max_pending_per_user 1: a LOW message delivered and unacknowledged is not dropped; the new send gets E_QUEUE_FULL; the ack is accepted', async () => {
    const node = await startInProcess(nodeConfig(cluster.redis.url, 'evict1:', 1, { websocket: { delivery: { max_pending_per_user: 1, ack_timeout: 30, max_backoff: 60 } } }));
    try {
      const [sender, bob] = await Promise.all([member(node.port, 'sender'), member(node.port, 'bob')]);
      assert.equal((await acked(sender, { op: 'send', to: 'bob', data: 'low', pri: 0 })).op, 'ack');
      const [held] = await nextMsgs(bob, 1);
      const refused = await acked(sender, { op: 'send', to: 'bob', data: 'next', pri: 0 });
      assert.deepEqual([refused.op, refused.code], ['err', 'E_QUEUE_FULL']);
      assert.match(String(refused.message), /none of them is LOW and waiting/);
      assert.equal(await cluster.store.zcard('evict1:dlq'), 0, 'nothing dead-lettered');
      bob.send({ op: 'ack', id: held!.id });
      // The pong may come before Redis has run the ack: wait for the message to be gone.
      await until(async () => ((await cluster.store.exists(`evict1:m:${held!.id}`)) === 0 ? true : undefined), 'the ack settled');
      await settle(bob);
      assert.deepEqual(bob.frames.filter((f) => f.op === 'err'), [], 'the ack was accepted');
      assert.equal((await acked(sender, { op: 'send', to: 'bob', data: 'after', pri: 0 })).op, 'ack', 'its place is free again');
      for (const c of [sender, bob]) c.close();
    } finally {
      await node.close();
    }
  });

  test('max_pending_per_user 2: the oldest LOW message still waiting is dropped, not the older one in flight', async () => {
    const node = await startInProcess(nodeConfig(cluster.redis.url, 'evict2:', 1, { websocket: { delivery: { max_pending_per_user: 2, max_inflight_per_user: 1, ack_timeout: 30, max_backoff: 60 } } }));
    try {
      const [sender, carol] = await Promise.all([member(node.port, 'sender'), member(node.port, 'carol')]);
      const ids: string[] = [];
      for (const data of ['L1', 'L2']) ids.push((await acked(sender, { op: 'send', to: 'carol', data, pri: 0 })).id as string);
      const [held] = await nextMsgs(carol, 1);
      assert.equal(held!.data, 'L1', 'L1 in flight, L2 waits for room in the window');
      assert.equal((await acked(sender, { op: 'send', to: 'carol', data: 'L3', pri: 0 })).op, 'ack');
      assert.deepEqual(await cluster.store.zrange('evict2:dlq', '0', '-1'), [ids[1]], 'L2 dropped');
      carol.send({ op: 'ack', id: held!.id });
      assert.deepEqual((await nextMsgs(carol, 1)).map((m) => m.data), ['L3']);
      assert.deepEqual(carol.frames.filter((f) => f.op === 'err'), [], 'the ack of L1 was accepted');
      for (const c of [sender, carol]) c.close();
    } finally {
      await node.close();
    }
  });
});

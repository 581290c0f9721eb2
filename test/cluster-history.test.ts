/**
 * Presence and group history in cluster mode, on two real nodes and a private Redis
 * (docs/messaging.md, "Presence and history in cluster mode"): `presence` answers count every
 * node's members; presence events and history are each node's: offsets without gaps and exact
 * recovery on the node a client was on, `recovered: false` on another.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { member, type Frame, type TestClient } from './helpers/client.js';
import { joinGroup as join, nextMsgs } from './helpers/history.js';
import { announceSkip, nodeConfig, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { startProcess, type ServerProcess } from './helpers/server.js';

const skip = announceSkip('cluster-history.test');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const HISTORY = { websocket: { history: [{ pattern: 'room.*', size: 1000 }], presence: { window: 0.05 } } };

describe('presence and history on two nodes', { skip }, () => {
  let redis: PrivateRedis;
  const nodes: ServerProcess[] = [];
  const open: TestClient[] = [];
  const on = async (node: number, user: string): Promise<TestClient & { welcome: Frame }> => {
    const client = await member(nodes[node]!.port, user);
    open.push(client);
    return client;
  };

  before(async () => {
    redis = await startPrivateRedis();
    // Node 0 runs two shards: its members of a group are on either.
    for (let i = 0; i < 2; i++) nodes.push(await startProcess(nodeConfig(redis.url, 'hist:', i === 0 ? 2 : 1, HISTORY)));
  });
  after(async () => {
    for (const client of open) client.close();
    await Promise.all(nodes.map((node) => node.stop()));
    await redis?.stop();
  });

  test('`presence` counts the members on every node, and a connection always sees its own join', async () => {
    const alice = await on(0, 'alice');
    await join(alice, 'lobby');
    const bob = [await on(1, 'bob'), await on(1, 'bob')];
    for (const client of bob) await join(client, 'lobby');
    alice.send({ op: 'presence', group: 'lobby', ref: 'p' });
    const answer = await alice.next((f) => f.op === 'presence' && f.ref === 'p');
    assert.deepEqual(answer.users, { alice: 1, bob: 2 });
    assert.deepEqual(answer.total, { users: 2, conns: 3 });
    bob[0]!.send({ op: 'presence', group: 'lobby', ref: 'c', counts: true });
    const counts = await bob[0]!.next((f) => f.op === 'presence' && f.ref === 'c');
    assert.equal(counts.users, undefined);
    assert.deepEqual(counts.total, { users: 2, conns: 3 });
    const outsider = await on(1, 'outsider');
    outsider.send({ op: 'presence', group: 'lobby', ref: 'x' });
    assert.equal((await outsider.next((f) => f.op === 'err')).code, 'E_NOT_MEMBER');
  });

  test('presence events tell the joins and leaves on the watcher\'s node', async () => {
    const watcher = await on(0, 'watcher');
    watcher.send({ op: 'join', group: 'watched', presence: true, ref: 'w' });
    await watcher.next((f) => f.op === 'joined');
    const carol = await on(0, 'carol');
    await join(carol, 'watched');
    const event = await watcher.next((f) => f.op === 'presence' && Array.isArray(f.joins) && (f.joins as string[]).includes('carol'));
    assert.deepEqual(event.leaves, []);
    carol.close();
    await watcher.next((f) => f.op === 'presence' && Array.isArray(f.leaves) && (f.leaves as string[]).includes('carol'));
  });

  test('a history group gets offsets without gaps on each node, in publish order per publisher, under each node\'s epoch', async () => {
    const a = [await on(0, 'ha0'), await on(0, 'ha1')];
    const b = await on(1, 'hb');
    const joinedA = await Promise.all(a.map((client) => join(client, 'room.h')));
    const joinedB = await join(b, 'room.h');
    assert.equal(joinedA[0]!.joined.epoch, joinedA[1]!.joined.epoch, 'one epoch per node');
    assert.notEqual(joinedA[0]!.joined.epoch, joinedB.joined.epoch, 'each node its own');
    for (let i = 0; i < 30; i++) (i % 3 === 0 ? b : a[i % 2]!).send({ op: 'pub', group: 'room.h', data: i, ref: `p${i}` });
    for (const [client, epoch] of [[a[0]!, joinedA[0]!.joined.epoch], [a[1]!, joinedA[0]!.joined.epoch], [b, joinedB.joined.epoch]] as const) {
      const msgs = await nextMsgs(client, 30);
      assert.deepEqual(msgs.map((m) => m.offset), Array.from({ length: 30 }, (_, i) => i + 1));
      assert.ok(msgs.every((m) => m.epoch === epoch));
      // Per publisher, in the order published.
      for (const publisher of ['ha0', 'ha1', 'hb']) {
        const data = msgs.filter((m) => m.from === publisher).map((m) => m.data as number);
        assert.deepEqual(data, [...data].sort((x, y) => x - y));
      }
    }
    const acks = b.frames.filter((f) => f.op === 'ack');
    assert.equal(acks.length, 10);
    assert.ok(acks.every((f) => typeof f.offset === 'number'), 'the publisher learns its node\'s offset');
  });

  test('recovery is exact on the node the client was on; on another node the epoch differs: recovered false', async () => {
    const publisher = await on(1, 'rp');
    await join(publisher, 'room.r');
    const stay = await on(0, 'keeper'); // keeps node 0 hearing the group while the client is away
    await join(stay, 'room.r');
    const client = await on(0, 'roamer');
    const first = await join(client, 'room.r');
    publisher.send({ op: 'pub', group: 'room.r', data: 'before' });
    const [seen] = await nextMsgs(client, 1);
    client.close();
    await client.closed;
    for (let i = 0; i < 5; i++) publisher.send({ op: 'pub', group: 'room.r', data: `missed ${i}`, ref: `m${i}` });
    for (let i = 0; i < 5; i++) await publisher.next((f) => f.op === 'ack' && f.ref === `m${i}`);
    await nextMsgs(stay, 6);
    const since = { offset: seen!.offset as number, epoch: first.joined.epoch as string };
    const back = await on(0, 'roamer');
    const recovered = await join(back, 'room.r', since);
    assert.equal(recovered.joined.recovered, true);
    assert.deepEqual(recovered.replayed.map((m) => m.data), ['missed 0', 'missed 1', 'missed 2', 'missed 3', 'missed 4']);
    const elsewhere = await on(1, 'roamer');
    const other = await join(elsewhere, 'room.r', since);
    assert.equal(other.joined.recovered, false);
    assert.equal(other.replayed.length, 0);
  });

  test('a node that stopped hearing a history group gives it a new epoch', async () => {
    const publisher = await on(1, 'sp');
    await join(publisher, 'room.s');
    const client = await on(0, 'sleeper');
    const first = await join(client, 'room.s');
    client.send({ op: 'leave', group: 'room.s', ref: 'l' });
    await client.next((f) => f.op === 'left');
    // Published while node 0 has no member: it never hears this one.
    publisher.send({ op: 'pub', group: 'room.s', data: 'unheard', ref: 'u' });
    await publisher.next((f) => f.op === 'ack' && f.ref === 'u');
    await sleep(100);
    const again = await join(client, 'room.s', { offset: first.joined.offset as number, epoch: first.joined.epoch as string });
    assert.equal(again.joined.recovered, false, 'node 0 cannot vouch for what it did not hear');
    assert.notEqual(again.joined.epoch, first.joined.epoch);
  });
});

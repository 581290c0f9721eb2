/**
 * Presence and group history in cluster mode, on three real nodes and a private Redis
 * (docs/messaging.md, "Presence and history in cluster mode"): `presence` answers count every
 * node's members; presence events are each node's; a history group's offsets and epoch are the
 * cluster's (kept in Redis), so a client recovers exactly on any node, and a Redis that lost its
 * data gives a new epoch (recovered: false), never wrong messages.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { sleep } from './helpers/broker.js';
import { getJson, member, type Frame, type TestClient } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { joinGroup as join, nextMsgs } from './helpers/history.js';
import { until } from './helpers/messaging.js';
import { watchCommands } from './helpers/script-work.js';
import { sdkClient } from './helpers/sdk.js';
import { announceSkip, nodeConfig, startPrivateRedis, type PrivateRedis, type PrivateRedisOptions } from './helpers/redis.js';
import { startProcess, type ServerProcess } from './helpers/server.js';

const skip = announceSkip('cluster-history.test');
const HISTORY = {
  websocket: {
    history: [
      { pattern: 'small.*', size: 5 },
      { pattern: 'brief.*', size: 100, ttl: 1 },
      { pattern: 'room.*', size: 1000 },
    ],
    presence: { window: 0.05 },
  },
};

/** Opens clients on the nodes, and closes them all at the end. */
function clients(nodes: ServerProcess[], open: TestClient[] = []): { on(node: number, user: string): Promise<TestClient & { welcome: Frame }>; closeAll(): void } {
  return {
    async on(node, user) {
      const client = await member(nodes[node]!.port, user);
      open.push(client);
      return client;
    },
    closeAll: () => open.forEach((client) => client.close()),
  };
}

const positionOf = (joined: Frame, last?: Frame): { offset: number; epoch: string } => ({
  offset: (last?.offset ?? joined.offset) as number,
  epoch: joined.epoch as string,
});

describe('presence and history on three nodes', { skip }, () => {
  const spec = { prefix: 'hist:', extra: HISTORY };
  // Node 0 runs two shards: its members of a group are on either.
  const cluster = clusterFixture({ nodes: [{ ...spec, shards: 2 }, spec, spec], stop: 'graceful' });
  const { on } = clients(cluster.nodes, cluster.open);

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

  test('a history group has one sequence on every node: the same offsets, messages and epoch, in publish order per publisher', async () => {
    const members = [await on(0, 'ha0'), await on(0, 'ha1'), await on(1, 'hb'), await on(2, 'hc')];
    const joined = await Promise.all(members.map((client) => join(client, 'room.h')));
    const epoch = joined[0]!.joined.epoch;
    assert.ok(joined.every((j) => j.joined.epoch === epoch && j.joined.offset === 0), 'one epoch and top for the cluster');
    for (let i = 0; i < 30; i++) members[i % 4]!.send({ op: 'pub', group: 'room.h', data: i, ref: `p${i}` });
    const seen = await Promise.all(members.map((client) => nextMsgs(client, 30)));
    for (const msgs of seen) {
      assert.deepEqual(msgs.map((m) => m.offset), Array.from({ length: 30 }, (_, i) => i + 1));
      assert.ok(msgs.every((m) => m.epoch === epoch));
      assert.deepEqual(msgs.map((m) => m.id), seen[0]!.map((m) => m.id), 'every node delivers the same message at each offset');
      for (const publisher of ['ha0', 'ha1', 'hb', 'hc']) {
        const data = msgs.filter((m) => m.from === publisher).map((m) => m.data as number);
        assert.deepEqual(data, [...data].sort((x, y) => x - y), 'per publisher, in the order published');
      }
    }
    // Each publisher's ack carries the offset its message got, which is where the others saw it.
    for (const client of members) {
      for (const ack of client.frames.filter((f) => f.op === 'ack')) {
        assert.equal(seen[0]!.find((m) => m.id === ack.id)?.offset, ack.offset);
      }
    }
    // `history` pages the same on any node.
    for (const node of [0, 1, 2]) {
      const reader = await on(node, `reader${node}`);
      await join(reader, 'room.h');
      reader.send({ op: 'history', group: 'room.h', since: 10, limit: 7, ref: 'h' });
      const page = await reader.next((f) => f.op === 'history' && f.ref === 'h');
      assert.deepEqual((page.msgs as Frame[]).map((m) => m.id), seen[0]!.slice(10, 17).map((m) => m.id));
      assert.deepEqual([page.offset, page.epoch, page.more], [30, epoch, true]);
    }
  });

  test('a client that reconnects to another node recovers exactly what it missed, then gets the live messages', async () => {
    const publishers = [await on(1, 'rp1'), await on(2, 'rp2')];
    for (const publisher of publishers) await join(publisher, 'room.r');
    const client = await on(0, 'roamer');
    const first = await join(client, 'room.r');
    publishers[0]!.send({ op: 'pub', group: 'room.r', data: 'before' });
    const [seen] = await nextMsgs(client, 1);
    client.close();
    await client.closed;
    // One after the other (two nodes' publishers have no order between them otherwise).
    for (let i = 0; i < 6; i++) {
      publishers[i % 2]!.send({ op: 'pub', group: 'room.r', data: `missed ${i}`, ref: `m${i}` });
      await publishers[i % 2]!.next((f) => f.op === 'ack' && f.ref === `m${i}`);
    }
    for (const node of [1, 2]) {
      const back = await on(node, 'roamer');
      const recovered = await join(back, 'room.r', positionOf(first.joined, seen));
      assert.equal(recovered.joined.recovered, true);
      assert.deepEqual(recovered.replayed.map((m) => m.data), ['missed 0', 'missed 1', 'missed 2', 'missed 3', 'missed 4', 'missed 5']);
      assert.equal(recovered.joined.offset, (seen!.offset as number) + 6);
      back.close();
    }
    const live = await on(2, 'roamer');
    await join(live, 'room.r', positionOf(first.joined, seen));
    publishers[0]!.send({ op: 'pub', group: 'room.r', data: 'after' });
    const [next] = await nextMsgs(live, 1);
    assert.deepEqual([next!.data, next!.offset], ['after', (seen!.offset as number) + 7]);
  });

  test('reconnecting to another node while publishers on every node race it: every message once, in order, 20 times over', async () => {
    const publishers = [await on(0, 'race0'), await on(1, 'race1'), await on(2, 'race2')];
    let stop = false;
    const published = [0, 0, 0];
    const traffic = publishers.map(async (publisher, p) => {
      while (!stop) {
        publisher.send({ op: 'pub', group: 'room.race', data: { p, n: published[p]!++ } });
        await sleep(4);
      }
    });
    const roamer = await on(0, 'racer');
    const start = await join(roamer, 'room.race');
    const epoch = start.joined.epoch as string;
    let position = positionOf(start.joined);
    const received: Frame[] = [];
    let client: TestClient = roamer;
    try {
      for (let round = 1; round <= 20; round++) {
        received.push(...(await nextMsgs(client, 1 + Math.floor(Math.random() * 8))));
        position = { offset: received.at(-1)!.offset as number, epoch };
        client.close();
        await client.closed;
        await sleep(Math.random() * 30);
        client = await on(round % 3, 'racer');
        const back = await join(client, 'room.race', position);
        assert.equal(back.joined.recovered, true, `round ${round}: recovered on node ${round % 3}`);
        received.push(...back.replayed);
      }
      received.push(...(await nextMsgs(client, 5)));
    } finally {
      stop = true;
      await Promise.all(traffic);
    }
    // Everything the client was handed since its first join, across 20 nodes switches: consecutive offsets, one epoch.
    const offsets = received.map((m) => m.offset as number);
    assert.deepEqual(offsets, Array.from({ length: offsets.length }, (_, i) => (start.joined.offset as number) + 1 + i), 'no loss, no duplicate, in order');
    assert.ok(received.every((m) => m.epoch === epoch));
    for (let p = 0; p < 3; p++) {
      const ns = received.filter((m) => (m.data as { p: number }).p === p).map((m) => (m.data as { n: number }).n);
      assert.deepEqual(ns, Array.from({ length: ns.length }, (_, i) => ns[0]! + i), `publisher ${p}: its messages in the order published, none missing`);
    }
  });

  test('history is bounded by the group\'s size and ttl, in Redis as on one process', async () => {
    const a = await on(1, 'bounded-a');
    const b = await on(2, 'bounded-b');
    const joined = await join(a, 'small.s');
    await join(b, 'small.s');
    for (let i = 1; i <= 8; i++) a.send({ op: 'pub', group: 'small.s', data: i, ref: `s${i}` });
    await nextMsgs(b, 8);
    b.send({ op: 'history', group: 'small.s', since: 0, ref: 'all' });
    const page = await b.next((f) => f.op === 'history' && f.ref === 'all');
    assert.deepEqual((page.msgs as Frame[]).map((m) => m.offset), [4, 5, 6, 7, 8], 'the last `size` messages');
    const tooOld = await join(await on(0, 'bounded-a'), 'small.s', { offset: 2, epoch: joined.joined.epoch as string });
    assert.equal(tooOld.joined.recovered, false, 'offset 3 is no longer kept');
    const recent = await join(await on(0, 'bounded-a'), 'small.s', { offset: 3, epoch: joined.joined.epoch as string });
    assert.deepEqual([recent.joined.recovered, recent.replayed.map((m) => m.data)], [true, [4, 5, 6, 7, 8]]);

    await join(a, 'brief.t');
    await join(b, 'brief.t');
    a.send({ op: 'pub', group: 'brief.t', data: 'fleeting', ref: 't' });
    await a.next((f) => f.op === 'ack' && f.ref === 't');
    b.send({ op: 'history', group: 'brief.t', since: 0, ref: 't1' });
    assert.equal(((await b.next((f) => f.op === 'history' && f.ref === 't1')).msgs as Frame[]).length, 1);
    await sleep(1300);
    b.send({ op: 'history', group: 'brief.t', since: 0, ref: 't2' });
    const expired = await b.next((f) => f.op === 'history' && f.ref === 't2');
    assert.deepEqual([expired.msgs, expired.offset], [[], 1], 'past its ttl the message is gone; the offset stays');
  });

  test('a `since` past the top, or a `history` past it, is E_BAD_FRAME; another epoch is recovered: false', async () => {
    const client = await on(2, 'bad-since');
    const joined = await join(client, 'room.bad');
    const epoch = joined.joined.epoch as string;
    client.send({ op: 'join', group: 'room.bad', ref: 'far', since: { offset: 99, epoch } });
    const refused = await client.next((f) => f.op === 'err' && f.ref === 'far');
    assert.equal(refused.code, 'E_BAD_FRAME');
    client.send({ op: 'history', group: 'room.bad', since: 99, ref: 'hfar' });
    assert.equal((await client.next((f) => f.op === 'err' && f.ref === 'hfar')).code, 'E_BAD_FRAME');
    const other = await join(await on(1, 'bad-since'), 'room.bad', { offset: 0, epoch: 'not-the-epoch' });
    assert.deepEqual([other.joined.recovered, other.joined.epoch], [false, epoch]);
  });
});

describe('group history when Redis goes away', { skip, timeout: 120_000 }, () => {
  const nodes: ServerProcess[] = [];
  const { on, closeAll } = clients(nodes);
  let redis: PrivateRedis | undefined;
  after(async () => {
    closeAll();
    await Promise.all(nodes.map((node) => node.stop()));
    await redis?.stop();
  });
  /** What the test before left stopped, then a new Redis and two nodes on it (keys under `prefix`). */
  async function afresh(prefix: string, options: PrivateRedisOptions = {}): Promise<PrivateRedis> {
    closeAll();
    await Promise.all(nodes.splice(0).map((node) => node.stop()));
    await redis?.stop();
    const started = (redis = await startPrivateRedis(options)); // stopped by after() should a node not start
    for (let i = 0; i < 2; i++) nodes.push(await startProcess(nodeConfig(started.url, prefix, 1, HISTORY)));
    return started;
  }
  const health = (want: string) => until(async () => {
    for (const node of nodes) if ((await getJson(node.port, '/health')).body.status !== want) return undefined;
    return true;
  }, `every node ${want}`, 15_000);

  test('a Redis restart without persistence gives a new epoch: recovered false, never wrong data; meanwhile history is refused with E_CLUSTER_UNAVAILABLE', async () => {
    redis = await afresh('restart:');
    const publisher = await on(1, 'pub');
    const stayer = await on(0, 'stayer'); // connected through the outage
    await join(publisher, 'room.x');
    const before = await join(stayer, 'room.x');
    for (let i = 0; i < 3; i++) publisher.send({ op: 'pub', group: 'room.x', data: `old ${i}` });
    const old = await nextMsgs(stayer, 3);

    await redis.kill();
    await health('degraded');
    publisher.send({ op: 'pub', group: 'room.x', data: 'during', ref: 'd' });
    assert.equal((await publisher.next((f) => f.op === 'err' && f.ref === 'd')).code, 'E_CLUSTER_UNAVAILABLE', 'nobody can number it');
    stayer.send({ op: 'history', group: 'room.x', since: 0, ref: 'h' });
    assert.equal((await stayer.next((f) => f.op === 'err' && f.ref === 'h')).code, 'E_CLUSTER_UNAVAILABLE');
    const joiner = await on(0, 'joiner');
    joiner.send({ op: 'join', group: 'room.x', ref: 'j' });
    assert.equal((await joiner.next((f) => f.op === 'err' && f.ref === 'j')).code, 'E_CLUSTER_UNAVAILABLE');
    // The SDK takes that refusal for a passing one: it joins again until Redis is back.
    const sdk = sdkClient(nodes[0]!.port, { user: 'sdk-joiner' });
    await sdk.client.connect();
    let settled = false;
    const sdkJoined = sdk.client.join('room.x').finally(() => (settled = true));
    await sleep(500);
    assert.equal(settled, false, 'refused, and waiting to try again');

    await redis.restart();
    await health('ok');
    try {
      assert.equal((await sdkJoined).history, true);
    } finally {
      sdk.client.close();
    }
    const back = await join(await on(1, 'stayer'), 'room.x', positionOf(before.joined, old.at(-1)));
    assert.equal(back.joined.recovered, false);
    assert.notEqual(back.joined.epoch, before.joined.epoch, 'Redis lost the history: a new epoch');
    assert.deepEqual([back.replayed, back.joined.offset], [[], 0]);
    publisher.send({ op: 'pub', group: 'room.x', data: 'new', ref: 'n' });
    assert.equal((await publisher.next((f) => f.op === 'ack' && f.ref === 'n')).offset, 1);
    // The member connected through it all sees the new numbering on the next message (the SDK says `gap`).
    const [next] = await nextMsgs(stayer, 1);
    assert.deepEqual([next!.data, next!.offset, next!.epoch], ['new', 1, back.joined.epoch]);
  });

  test('a Redis with an append-only file keeps history and epochs through its restart: recovered true', async () => {
    redis = await afresh('durable:', { durable: true });
    const client = await on(0, 'keeper');
    const first = await join(client, 'room.d');
    client.send({ op: 'pub', group: 'room.d', data: 'seen' });
    const [seen] = await nextMsgs(client, 1);
    client.send({ op: 'pub', group: 'room.d', data: 'unseen', ref: 'u' });
    await client.next((f) => f.op === 'ack' && f.ref === 'u');
    client.close();
    await redis.kill();
    await redis.restart();
    await health('ok');
    const back = await join(await on(1, 'keeper'), 'room.d', positionOf(first.joined, seen));
    assert.deepEqual([back.joined.recovered, back.joined.epoch, back.replayed.map((m) => m.data)], [true, first.joined.epoch, ['unseen']]);
  });

  // Redis came back with the same epoch and an older top (an RDB snapshot, a replica promoted
  // before it had everything): the offsets after it would be given out again, to other messages.
  test('a Redis back with less than its members saw gives a new epoch: an offset is never given out twice', async () => {
    redis = await afresh('behind:');
    const [stayer, publisher] = [await on(0, 'stayer'), await on(1, 'publisher')];
    const first = await join(stayer, 'room.b');
    const pub = async (data: string): Promise<void> => {
      publisher.send({ op: 'pub', group: 'room.b', data, ref: data });
      await publisher.next((f) => f.op === 'ack' && f.ref === data);
    };
    for (const data of ['a', 'b']) await pub(data);
    const store = redis.client();
    await store.save(); // the snapshot Redis comes back with
    store.disconnect();
    for (const data of ['c', 'd']) await pub(data);
    const seen = await nextMsgs(stayer, 4);
    await redis.kill();
    await redis.restart();
    await health('ok');
    await pub('new');
    const [next] = await nextMsgs(stayer, 1);
    assert.equal(next!.data, 'new');
    assert.ok(next!.epoch !== first.joined.epoch || (next!.offset as number) > 4, `"new" came as offset ${String(next!.offset)} of the epoch that numbered "c" and "d" 3 and 4`);
    const back = await join(await on(0, 'returner'), 'room.b', positionOf(first.joined, seen.at(-1)));
    assert.equal(back.joined.recovered, false, 'what followed offset 4 is not what the returner missed');
  });

  // The same with no member of the group anywhere when Redis lost them: no node knows the top
  // it gave out, so it is the Redis server that must tell (its run_id, history-scripts.ts).
  test('a Redis back from a snapshot gives a new epoch with no member anywhere too: a client that saw the lost messages is not told it recovered', async () => {
    redis = await afresh('snap:');
    const [reader, publisher] = [await on(0, 'reader'), await on(1, 'publisher')]; // the publisher is no member
    const first = await join(reader, 'room.s');
    const offsets: number[] = [];
    const pub = async (data: string): Promise<void> => {
      publisher.send({ op: 'pub', group: 'room.s', data, ref: data });
      offsets.push((await publisher.next((f) => f.op === 'ack' && f.ref === data)).offset as number);
    };
    for (const data of ['a', 'b']) await pub(data);
    const store = redis.client();
    await store.save(); // the snapshot Redis comes back with
    for (const data of ['c', 'd']) await pub(data);
    const seen = await nextMsgs(reader, 4);
    reader.close();
    await until(async () => ((await store.exists('snap:pg:room.s')) === 0 ? true : undefined), 'the reader to be gone from the group', 15_000);
    store.disconnect();
    await redis.kill();
    await redis.restart();
    await health('ok');
    await pub('e');
    // Once the group is stamped, its scripts run no INFO: the node tells them the run_id (ARGV[9]).
    const ran: string[][] = [];
    let watched = false;
    const unwatch = await watchCommands(redis.url, (args, client) => {
      if (client === 'lua' || (args[0]?.toLowerCase() === 'evalsha' && args[4] === 'room.s')) ran.push(args); // ARGV[2]: the group
      if (args[0]?.toLowerCase() === 'echo' && args[1] === 'watched') watched = true;
    });
    for (const data of ['f', 'g']) await pub(data);
    const probe = redis.client();
    await probe.echo('watched'); // MONITOR's feed may come later than the acks: until it has this
    await until(async () => watched || undefined, 'the watch to see the scripts', 15_000);
    unwatch();
    const back = await join(await on(1, 'reader'), 'room.s', positionOf(first.joined, seen.at(-1)));
    const numbered = `after the restart: offsets ${offsets.slice(4).join(', ')}, epoch ${back.joined.epoch === first.joined.epoch ? 'the same' : 'new'}`;
    assert.equal(back.joined.recovered, false, `what followed offset 4 is not what the reader missed (${numbered}; replayed ${JSON.stringify(back.replayed.map((m) => m.data))})`);
    assert.notEqual(back.joined.epoch, first.joined.epoch, numbered);
    const runId = /run_id:(\w+)/.exec(await probe.info('server'))![1];
    probe.disconnect();
    assert.deepEqual(ran.filter((args) => args[0]?.toLowerCase() === 'evalsha').map((args) => args[11]), [runId, runId]);
    assert.deepEqual(ran.filter((args) => args[0]?.toLowerCase() === 'info'), []);
  });
});

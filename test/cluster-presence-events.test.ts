/**
 * Cluster mode: presence events are the cluster's. A watcher on one node hears the users who
 * join and leave on any node: users, not connections (a second connection on any node is no
 * news; a user leaves when its last connection anywhere goes), coalesced over the window, and
 * a node killed with SIGKILL makes its users leave once it is forgotten (presence_ttl); one
 * that only stalled that long comes back with them. Real server processes on a private
 * redis-server.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { getJson, member, type Frame, type TestClient } from './helpers/client.js';
import { untilTrue } from './helpers/messaging.js';
import { eventsUntilQuiet as quietEvents, isEvent } from './helpers/presence.js';
import { announceSkip, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { startProcess, testConfig, type ServerProcess } from './helpers/server.js';

const skip = announceSkip('cluster-presence-events.test');

/** websocket.presence.window: long enough that a test's few joins land in one window even on a busy machine. */
const WINDOW_S = 0.5;
/** No event for this long: the window's event, if any, came. */
const QUIET_MS = WINDOW_S * 1000 + 1000;

function nodeOverrides(url: string, presenceTtl: number): Record<string, unknown> {
  return testConfig({
    websocket: { server: { shards: 1 }, groups: { require_membership: false }, presence: { window: WINDOW_S } },
    cluster: { redis_url: url, presence_ttl: presenceTtl, sweep_interval: 0.05, reconnect_max_delay: 0.2 },
  });
}

/** Joins `group` asking for its presence events. */
async function watch(client: TestClient, group: string): Promise<void> {
  client.send({ op: 'join', group, presence: true, ref: `w-${group}` });
  await client.next((f) => f.op === 'joined' && f.ref === `w-${group}`);
}

/** Presence events of `group` until it has been quiet for QUIET_MS ms. */
const eventsUntilQuiet = (client: TestClient, group: string, quietMs = QUIET_MS) => quietEvents(client, group, quietMs);

async function leave(client: TestClient, group: string): Promise<void> {
  client.send({ op: 'leave', group, ref: `l-${group}` });
  await client.next((f) => f.op === 'left' && f.ref === `l-${group}`);
}

async function close(client: TestClient): Promise<void> {
  client.close();
  await client.closed;
}

const NONE = { joins: [], leaves: [], frames: 0 };

describe('presence events across nodes', { skip }, () => {
  let redis: PrivateRedis;
  let a: ServerProcess;
  let b: ServerProcess;
  let c: ServerProcess;
  const open: TestClient[] = [];
  before(async () => {
    redis = await startPrivateRedis();
    [a, b, c] = (await Promise.all([0, 1, 2].map(() => startProcess(nodeOverrides(redis.url, 2))))) as [ServerProcess, ServerProcess, ServerProcess];
  });
  after(async () => {
    for (const client of open) client.close();
    for (const node of [a, b, c]) if (node && node.child.exitCode === null && node.child.signalCode === null) await node.stop();
    await redis?.stop();
  });

  test('a watcher hears users join and leave on another node: not their second connection, on either node; the leave when the last one anywhere goes', async () => {
    const watcher = await member(a.port, 'watcher-a');
    const remoteWatcher = await member(b.port, 'watcher-b');
    open.push(watcher, remoteWatcher);
    await watch(watcher, 'team');
    await watch(remoteWatcher, 'team');
    assert.deepEqual(await eventsUntilQuiet(watcher, 'team'), { joins: ['watcher-a', 'watcher-b'], leaves: [], frames: 1 });
    await eventsUntilQuiet(remoteWatcher, 'team');

    const carolB = await member(b.port, 'carol', ['team']);
    open.push(carolB);
    assert.deepEqual(await eventsUntilQuiet(watcher, 'team'), { joins: ['carol'], leaves: [], frames: 1 });
    assert.deepEqual(await eventsUntilQuiet(remoteWatcher, 'team', 100), { joins: ['carol'], leaves: [], frames: 1 });

    // carol's second connection on A and third on B are no news, nor is the first one going.
    const carolA = await member(a.port, 'carol', ['team']);
    const carolB2 = await member(b.port, 'carol', ['team']);
    open.push(carolA, carolB2);
    await leave(carolB, 'team');
    await close(carolB2);
    assert.deepEqual(await eventsUntilQuiet(watcher, 'team'), NONE);
    assert.deepEqual(await eventsUntilQuiet(remoteWatcher, 'team', 100), NONE);

    // Her last connection anywhere (on A, the watcher's node) goes: she leaves, on both nodes.
    await close(carolA);
    assert.deepEqual(await eventsUntilQuiet(watcher, 'team'), { joins: [], leaves: ['carol'], frames: 1 });
    assert.deepEqual(await eventsUntilQuiet(remoteWatcher, 'team', 100), { joins: [], leaves: ['carol'], frames: 1 });
    // Members that do not watch get no events.
    assert.equal(carolA.frames.filter(isEvent('team')).length, 0);

    // Redis keeps one count per user and group, and none for users gone.
    const counts = await redis.client().hgetall('ocs:pc:team');
    assert.deepEqual(counts, { 'watcher-a': '1', 'watcher-b': '1' });
  });

  test('coalesced over the window: a user flapping in and out makes no event, the joins of one window make one', async () => {
    const watcher = await member(a.port, 'flapwatch');
    open.push(watcher);
    await watch(watcher, 'flap');
    await eventsUntilQuiet(watcher, 'flap');
    const flapper = await member(b.port, 'flapper');
    open.push(flapper);
    for (let i = 0; i < 5; i++) {
      flapper.send({ op: 'join', group: 'flap', ref: `j${i}` });
      flapper.send({ op: 'leave', group: 'flap', ref: `l${i}` });
    }
    await flapper.next((f) => f.ref === 'l4');
    const [dave, erin] = await Promise.all([member(b.port, 'dave', ['flap']), member(a.port, 'erin', ['flap'])]);
    open.push(dave, erin);
    assert.deepEqual(await eventsUntilQuiet(watcher, 'flap'), { joins: ['dave', 'erin'], leaves: [], frames: 1 });
  });

  test('a node that stalls past presence_ttl is taken for dead (its users leave), then writes its members again (they come back)', async () => {
    const watcher = await member(a.port, 'stallwatch');
    open.push(watcher);
    await watch(watcher, 'stall');
    const sleeper = await member(c.port, 'sleeper', ['stall']);
    open.push(sleeper);
    assert.deepEqual(await eventsUntilQuiet(watcher, 'stall'), { joins: ['sleeper', 'stallwatch'], leaves: [], frames: 1 });
    c.child.kill('SIGSTOP');
    try {
      const left = await watcher.next(isEvent('stall'), 10_000);
      assert.deepEqual({ joins: left.joins, leaves: left.leaves }, { joins: [], leaves: ['sleeper'] });
    } finally {
      c.child.kill('SIGCONT');
    }
    // Its next heartbeat finds its own gone, and it writes its members again.
    const back = await watcher.next(isEvent('stall'), 10_000);
    assert.deepEqual({ joins: back.joins, leaves: back.leaves }, { joins: ['sleeper'], leaves: [] });
    watcher.send({ op: 'presence', group: 'stall', ref: 'q' });
    const answer = await watcher.next((f) => f.op === 'presence' && f.ref === 'q');
    assert.deepEqual(answer.users, { sleeper: 1, stallwatch: 1 });
  });

  test('a node killed with SIGKILL: once it is forgotten (presence_ttl) its users leave, except those still connected elsewhere', async () => {
    const watcher = await member(a.port, 'deathwatch');
    open.push(watcher);
    await watch(watcher, 'doom');
    const ghost = await member(c.port, 'ghost', ['doom']);
    const samC = await member(c.port, 'sam', ['doom']);
    const samA = await member(a.port, 'sam', ['doom']);
    open.push(ghost, samC, samA);
    assert.deepEqual(await eventsUntilQuiet(watcher, 'doom'), { joins: ['deathwatch', 'ghost', 'sam'], leaves: [], frames: 1 });

    c.child.kill('SIGKILL');
    const killedAt = Date.now();
    const event = await watcher.next(isEvent('doom'), 10_000);
    const took = Date.now() - killedAt;
    assert.deepEqual({ joins: event.joins, leaves: event.leaves }, { joins: [], leaves: ['ghost'] });
    // presence_ttl (2 s), then a heartbeat (every ttl / 3) to see it, then the window.
    assert.ok(took >= 1000 && took <= 2000 + 700 + WINDOW_S * 1000 + 1500, `heard after ${took} ms`);
    assert.deepEqual(await eventsUntilQuiet(watcher, 'doom'), NONE, 'once, by whichever node forgot it');
  });
});

describe('presence events while Redis is unreachable', { skip }, () => {
  let redis: PrivateRedis;
  const nodes: ServerProcess[] = [];
  const open: TestClient[] = [];
  after(async () => {
    for (const client of open) client.close();
    await Promise.all(nodes.map((node) => node.stop()));
    await redis?.stop();
  });

  test('no node crashes; events resume once Redis is back, and none is wrong', async () => {
    redis = await startPrivateRedis({ durable: true });
    // A presence_ttl longer than the outage: the nodes do not forget each other meanwhile.
    for (let i = 0; i < 2; i++) nodes.push(await startProcess(nodeOverrides(redis.url, 30)));
    const [a, b] = nodes as [ServerProcess, ServerProcess];
    const watcher = await member(a.port, 'outwatch');
    const carol = await member(b.port, 'carol', ['out']);
    open.push(watcher, carol);
    await watch(watcher, 'out');
    // carol joined before A had a member of the group, so A heard only its watcher's own join.
    assert.deepEqual(await eventsUntilQuiet(watcher, 'out'), { joins: ['outwatch'], leaves: [], frames: 1 });

    await redis.kill();
    await untilTrue('both nodes to report Redis down', async () => {
      for (const node of nodes) if ((await getJson(node.port, '/health')).body.status !== 'degraded') return false;
      return true;
    });
    const dave = await member(b.port, 'dave', ['out']);
    open.push(dave);
    await leave(carol, 'out');
    await redis.restart();
    await untilTrue('both nodes to report Redis up', async () => {
      for (const node of nodes) if ((await getJson(node.port, '/health')).body.status !== 'ok') return false;
      return true;
    });
    const erin = await member(b.port, 'erin', ['out']);
    open.push(erin);
    const heard = await eventsUntilQuiet(watcher, 'out');
    // What changed on B during the outage is told when B writes its members again, which A
    // hears if it subscribed again first; never anything that did not happen.
    assert.ok(heard.joins.includes('erin'), JSON.stringify(heard));
    for (const user of heard.joins) assert.ok(['dave', 'erin'].includes(user), JSON.stringify(heard));
    for (const user of heard.leaves) assert.ok(user === 'carol', JSON.stringify(heard));
    // And Redis agrees with the nodes again.
    assert.deepEqual(await redis.client().hgetall('ocs:pc:out'), { outwatch: '1', dave: '1', erin: '1' });
    for (const node of nodes) assert.equal(node.child.exitCode, null);
  });
});

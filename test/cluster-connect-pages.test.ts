/**
 * A new connection of a user with more messages in flight than one CONNECT lists (500) is
 * handed all of them, in further scripts of at most 500 each (CONNECT_PAGE), before what it
 * claims; with ack deadlines minutes away, so that no redelivery can explain what arrives.
 * Before, past 2,000 (then the most one script listed) none was handed over: they came at their deadlines.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { CONNECT_LISTED } from '../src/cluster/backlog.js';
import { CONNECT, CONNECT_PAGE, PUMP } from '../src/cluster/window-scripts.js';
import { member, type Frame, type TestClient } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { nextMsgs, settle, until } from './helpers/messaging.js';
import { announceSkip, nodeConfig } from './helpers/redis.js';
import { watchCommands } from './helpers/script-work.js';

const skip = announceSkip('cluster-connect-pages.test');
const sha = (source: string): string => createHash('sha1').update(source).digest('hex');
const LONG = { ack_timeout: 300, max_backoff: 300 };

/** Sends `data` from..to-1 to `to`, each awaited to its ack (stored). */
async function sendAll(sender: TestClient, to: string, from: number, count: number, tag: string): Promise<void> {
  for (let i = from; i < from + count; i++) sender.send({ op: 'send', to, data: i, ref: `${tag}${i}` });
  for (let i = from; i < from + count; i++) assert.equal((await sender.next((f) => f.ref === `${tag}${i}`, 20_000)).op, 'ack');
}

/** Whether `client` has any message unread once every frame sent before a ping's pong is in. */
async function more(client: TestClient): Promise<boolean> {
  await settle(client);
  return client.frames.some((f) => f.op === 'msg' || f.op === 'batch');
}

/** Every message that reaches `client` until none comes for `quietMs`. */
async function drain(client: TestClient, quietMs: number): Promise<number[]> {
  const got: number[] = [];
  for (;;) {
    const batch = await nextMsgs(client, 1, quietMs).catch(() => [] as Frame[]);
    if (batch.length === 0) return got;
    got.push(...batch.map((m) => m.data as number));
  }
}

describe('a reconnect with more messages in flight than one script lists', { skip, timeout: 180_000 }, () => {
  // The default window (10,000) and resend budget (a window's worth per ack_timeout).
  const spec = { prefix: 'pages:', extra: { websocket: { delivery: LONG } } };
  const cluster = clusterFixture({ nodes: [spec, spec], stop: 'graceful' });
  const { nodes, open } = cluster;

  test('gets all 2,600 in flight, in scripts of at most 500, then the 400 that waited, in order', async () => {
    const sender = await member(nodes[0]!.port, 'sender');
    open.push(sender);
    const first = await member(nodes[0]!.port, 'many');
    await sendAll(sender, 'many', 0, 2600, 'm');
    assert.equal((await nextMsgs(first, 2600, 20_000)).length, 2600);
    first.close();
    await first.closed;
    // Sent while the user is away: these wait, to be claimed for its next connection.
    await sendAll(sender, 'many', 2600, 400, 'm');

    const runs: string[] = [];
    const pageCounts: number[] = [];
    const unwatch = await watchCommands(cluster.redis.url, (args) => {
      if (args[0]?.toLowerCase() !== 'evalsha') return;
      if (args[1] === sha(CONNECT)) runs.push('CONNECT');
      else if (args[1] === sha(PUMP)) runs.push('PUMP');
      else if (args[1] === sha(CONNECT_PAGE)) {
        runs.push('PAGE');
        pageCounts.push(Number(args[7]));
      }
    });
    try {
      const started = Date.now();
      const again = await member(nodes[1]!.port, 'many');
      open.push(again);
      assert.equal(again.welcome.pending, 3000);
      const got = (await nextMsgs(again, 3000, 20_000)).map((m) => m.data as number);
      const took = Date.now() - started;
      assert.deepEqual(got, Array.from({ length: 3000 }, (_, i) => i), 'every message once: what was in flight, then what waited');
      assert.ok(took < 30_000, `well before the ack deadlines (300 s): ${took} ms`);
      assert.equal(await more(again), false, 'nothing more');
      await until(() => (runs.includes('PUMP') ? true : undefined), `a PUMP after the pages: ${runs.join(' ')}`, 2000).catch(() => undefined);
      assert.equal(runs[0], 'CONNECT');
      assert.ok(pageCounts.length >= 1, `listed in more than one script: ${runs.join(' ')}`);
      assert.ok(pageCounts.every((count) => count <= CONNECT_LISTED), `each page at most ${CONNECT_LISTED}: ${pageCounts.join(' ')}`);
      assert.ok(runs.indexOf('PUMP') > runs.lastIndexOf('PAGE'), `the claims after the listing: ${runs.join(' ')}`);
    } finally {
      unwatch();
    }
  });

  // What may happen while the pages are read: acks (here, from the user's first connection on the
  // other node), and new messages routed to the user. None may reach the new connection twice,
  // or out of order, and none that stays in flight may be missed.
  test('acks and new messages while the listing pages: each message once, in order, none missed', async () => {
    const sender = await member(nodes[0]!.port, 'sender2');
    open.push(sender);
    const first = await member(nodes[0]!.port, 'busy');
    open.push(first);
    await sendAll(sender, 'busy', 0, 2600, 'b');
    const inFlight = await nextMsgs(first, 2600, 20_000);
    const acked = new Set<number>();
    const again = member(nodes[1]!.port, 'busy');
    // At once: acks of the last 600 (those a later page would list) and 50 new sends, racing the pages.
    for (let i = 2000; i < 2600; i += 16) {
      const ids = inFlight.slice(i, i + 16);
      first.send({ op: 'ack', ids: ids.map((m) => m.id) });
      for (const m of ids) acked.add(m.data as number);
    }
    for (let i = 2600; i < 2650; i++) sender.send({ op: 'send', to: 'busy', data: i, ref: `b${i}` });
    const second = await again;
    open.push(second);
    const got: number[] = [];
    for (;;) {
      const batch = await nextMsgs(second, 1, 10_000).catch(() => [] as Frame[]);
      if (batch.length === 0) break;
      got.push(...batch.map((m) => m.data as number));
      if (got.includes(2649) && got.filter((d) => !acked.has(d)).length >= 2050) break;
    }
    for (let i = 1; i < got.length; i++) assert.ok(got[i]! > got[i - 1]!, `once each, in order: ${got[i - 1]} then ${got[i]}`);
    assert.equal(await more(second), false, 'nothing more');
    const missed = Array.from({ length: 2650 }, (_, i) => i).filter((d) => !acked.has(d) && !got.includes(d));
    assert.deepEqual(missed, [], 'every message still in flight, and every new one');
  });

  // The budget is a window's worth (10,000) per ack_timeout, per user, on each node: three
  // listings of 2,600 spend 7,800, and a fourth would overspend it. All or none, as before.
  test('the resend budget still holds: past it, a new connection is handed none of them', async () => {
    const sender = await member(nodes[0]!.port, 'sender3');
    open.push(sender);
    const first = await member(nodes[0]!.port, 'loop');
    open.push(first);
    await sendAll(sender, 'loop', 0, 2600, 'l');
    await nextMsgs(first, 2600, 20_000);
    for (let i = 0; i < 3; i++) {
      const again = await member(nodes[1]!.port, 'loop');
      assert.equal((await nextMsgs(again, 2600, 20_000)).length, 2600, `connection ${i + 1} is handed all 2,600`);
      again.close();
      await again.closed;
    }
    const fourth = await member(nodes[1]!.port, 'loop');
    open.push(fourth);
    assert.equal(await more(fourth), false, 'none past the budget: they come at their deadlines');
  });

  // Found by a review: after a failed page the messages that waited (newer) went out ahead of the in flight it had not listed.
  test('a page that fails with its node cut off: the rescan hands the rest of the listing, then what waits', async () => {
    const sender = await member(nodes[0]!.port, 'sender-b');
    open.push(sender);
    const first = await member(nodes[0]!.port, 'broken');
    await sendAll(sender, 'broken', 0, 3000, 'b');
    await nextMsgs(first, 3000, 20_000);
    first.close();
    await first.closed;
    await sendAll(sender, 'broken', 3000, 400, 'b'); // these wait: the user is away
    const store = cluster.redis.client();
    let killed = false;
    const unwatch = await watchCommands(cluster.redis.url, (args, client) => {
      if (killed || args[0]?.toLowerCase() !== 'evalsha' || args[1] !== sha(CONNECT_PAGE)) return;
      killed = true; // node 1's command connection, dropped as it reads a page
      void store.call('CLIENT', 'KILL', 'ADDR', client).catch(() => undefined);
    });
    const again = await member(nodes[1]!.port, 'broken');
    open.push(again);
    const got = await drain(again, 8000); // past the node's reconnection and its rescan
    unwatch();
    assert.ok(killed);
    // Before 2026-12-07 the rest of the listing came at its deadlines, and what waited was held back until then.
    assert.deepEqual(got, Array.from({ length: 3400 }, (_, k) => k), 'each once, the in flight first, in order');
  });
});

// Found by a review of the pages: a listing cut short by the budget let newer messages
// overtake the rest, and a node dying between its CONNECT and its PUMP left the
// user's new messages held behind P wb:USER until an ack.
describe('the pages under pressure', { skip, timeout: 180_000 }, () => {
  const config = (url: string): Record<string, unknown> => {
    const node = nodeConfig(url, 'pp:', 1, { websocket: { delivery: { ...LONG, max_inflight_per_user: 3000 } } });
    (node.cluster as Record<string, unknown>).command_timeout = 1; // a CONNECT's hold of new messages: 2 s
    return node;
  };
  const cluster = clusterFixture({ nodes: [{ config }, { config }], stop: 'kill' });
  const { nodes, open } = cluster;
  const on = async (node: number, user: string): Promise<TestClient> => {
    const client = await member(nodes[node]!.port, user);
    open.push(client);
    return client;
  };

  test('messages claimed into the listing while its pages run do not cut it short', async () => {
    const sender = await on(0, 'sender-a');
    const first = await on(0, 'prio');
    const sendPri = async (from: number, count: number, pri: number): Promise<void> => {
      for (let i = from; i < from + count; i++) sender.send({ op: 'send', to: 'prio', data: i, pri, ref: `p${i}` });
      for (let i = from; i < from + count; i++) await sender.next((f) => f.ref === `p${i}`, 20_000);
    };
    await sendPri(0, 500, 2); // HIGH
    await sendPri(500, 2000, 1); // NORMAL
    await sendPri(10_000, 500, 0); // LOW: the window (3,000) is full
    const inFlight = await nextMsgs(first, 3000, 20_000);
    await sendPri(2500, 300, 1); // NORMAL, waiting: they sort before the LOW ones in flight
    const high = inFlight.filter((m) => (m.data as number) < 300).map((m) => m.id as string);
    let acked = false;
    const unwatch = await watchCommands(cluster.redis.url, (args) => {
      if (acked || args[0]?.toLowerCase() !== 'evalsha' || args[1] !== sha(CONNECT)) return;
      acked = true; // room: node 0 claims the 300 waiting NORMAL into the range the pages read
      for (let i = 0; i < high.length; i += 16) first.send({ op: 'ack', ids: high.slice(i, i + 16) });
    });
    const second = await on(1, 'prio');
    const got = await drain(second, 3000);
    unwatch();
    const low = got.filter((d) => d >= 10_000);
    assert.equal(low.length, 500, 'every LOW message in flight handed over');
  });

  test('a node that dies between its CONNECT and its PUMP holds the user\'s new messages no longer than its hold (2 x command_timeout)', async () => {
    const sender = await on(0, 'sender-c');
    const a = await on(0, 'held');
    await sendAll(sender, 'held', 0, 2000, 'h');
    await nextMsgs(a, 2000, 20_000);
    const b = await on(0, 'held'); // spends 2,000 of node 0's resend budget (3,000)
    assert.equal((await nextMsgs(b, 2000, 20_000)).length, 2000);
    a.close();
    b.close();
    await Promise.all([a.closed, b.closed]);
    await sendAll(sender, 'held', 2000, 100, 'h'); // these wait
    const live = await on(0, 'held'); // past node 0's budget: handed nothing, claims nothing
    assert.deepEqual(await drain(live, 1000), []);
    let killed = false;
    const unwatch = await watchCommands(cluster.redis.url, (args) => {
      if (killed || args[0]?.toLowerCase() !== 'evalsha' || args[1] !== sha(CONNECT_PAGE)) return;
      killed = true;
      nodes[1]!.child.kill('SIGKILL');
    });
    void member(nodes[1]!.port, 'held').catch(() => undefined);
    for (let i = 0; i < 300 && !killed; i++) await new Promise((r) => setTimeout(r, 10));
    unwatch();
    assert.ok(killed, 'node 1 read a page');
    // What is sent during the hold waits for the user's next ack or deadline; what comes after
    // goes at once, behind what waited (cluster-window-hold.test.ts).
    await new Promise((r) => setTimeout(r, 2500));
    const sentAt = Date.now();
    await sendAll(sender, 'held', 6000, 1, 'n');
    const got: number[] = [];
    while (!got.includes(6000) && Date.now() - sentAt < 20_000) got.push(...(await drain(live, 500)));
    const waited = Date.now() - sentAt;
    assert.ok(got.includes(6000) && waited < 3000, `a new message to a user with room, after the hold, waited ${waited} ms`);
    assert.deepEqual(got, [...Array.from({ length: 100 }, (_, i) => 2000 + i), 6000], 'what waited, then the new message');
  });
});

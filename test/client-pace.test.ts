/**
 * The SDK keeps to the pace a server states in its `welcome` (`limits`): the bursts of its own
 * making, re-joins after a reconnect and the acks of a stored backlog, go out paced, the acks
 * several ids to a frame. Before, a default client with 250 groups was closed 4029 at every
 * reconnect, for ever, and one with a backlog of 600 spent half a minute locked out.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Pacer } from '../src/client/pacer.js';
import { MAX_ACK_IDS } from '../src/protocol/frames.js';
import type { RunningServer } from '../src/index.js';
import { getJson, member } from './helpers/client.js';
import { settle, until } from './helpers/messaging.js';
import { nextOpen, sdkClient } from './helpers/sdk.js';
import { startInProcess } from './helpers/server.js';
import { tcpProxy } from './helpers/tcp-proxy.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('the pacer', () => {
  test('sends at once within its share of the burst (less the auth the server counted), the rest in order as the allowance refills', async () => {
    const sent: number[] = [];
    const pacer = new Pacer<number>({ messagesPerSecond: 200, burst: 10 }, (n) => sent.push(n));
    for (let n = 0; n < 14; n++) pacer.send(n);
    assert.deepEqual(sent, [0, 1, 2, 3], 'half the burst, less one, at once');
    assert.equal(pacer.backlog, 10);
    await until(() => (sent.length === 14 ? true : undefined), 'the rest', 2_000);
    assert.deepEqual(sent, Array.from({ length: 14 }, (_, n) => n));
    pacer.stop();
  });

  test('a burst of 1: the auth used it, so the first frame after the welcome waits for the next token', async () => {
    const sent: number[] = [];
    const pacer = new Pacer<number>({ messagesPerSecond: 100, burst: 1 }, (n) => sent.push(n));
    pacer.send(1);
    assert.deepEqual(sent, []);
    await until(() => (sent.length === 1 ? true : undefined), 'the frame', 1_000);
    pacer.stop();
  });

  test('a frame sent first goes ahead of what waits; a cancelled request is never sent; flushFirst sends the first ones at once', async () => {
    const sent: string[] = [];
    const pacer = new Pacer<string>({ messagesPerSecond: 50, burst: 4 }, (f) => sent.push(f));
    for (const f of ['a', 'b', 'c', 'd']) pacer.send(f, f);
    pacer.sendFirst('auth');
    pacer.cancel('c');
    await until(() => (sent.length === 4 ? true : undefined), 'all but the cancelled', 2_000);
    assert.deepEqual(sent, ['a', 'auth', 'b', 'd']);
    pacer.send('e', 'e');
    pacer.send('f', 'f');
    pacer.sendFirst('ack');
    pacer.flushFirst();
    assert.deepEqual(sent.slice(4), ['ack']);
    pacer.stop();
  });

  test('cancelled frames past half of what waits are dropped at once, the rest keeping their order', async () => {
    const sent: string[] = [];
    const pacer = new Pacer<string>({ messagesPerSecond: 50, burst: 2 }, (f) => sent.push(f));
    for (const f of ['a', 'b', 'c', 'd', 'e', 'f']) pacer.send(f, f);
    assert.deepEqual([sent, pacer.backlog], [[], 6]);
    pacer.cancel('b');
    pacer.cancel('d');
    pacer.cancel('c');
    assert.equal(pacer.backlog, 6, 'half cancelled: kept until their turn');
    pacer.cancel('f');
    assert.equal(pacer.backlog, 2, 'more than half: dropped');
    pacer.send('g', 'g');
    pacer.cancel('e');
    await until(() => (sent.length === 2 ? true : undefined), 'the rest', 2_000);
    assert.deepEqual(sent, ['a', 'g']);
    pacer.stop();
  });

  test('what waits is dropped with the connection', async () => {
    const sent: number[] = [];
    const pacer = new Pacer<number>({ messagesPerSecond: 100, burst: 4 }, (n) => sent.push(n));
    for (let n = 0; n < 5; n++) pacer.send(n);
    pacer.stop();
    await sleep(100);
    assert.deepEqual([sent, pacer.backlog], [[0], 0]);
  });

  test('limits a welcome states are used; none, an unlimited rate or nonsense mean no pacing', () => {
    assert.deepEqual(Pacer.limitsOf({ limits: { messagesPerSecond: 100, burst: 200, ackIds: 128 } }), { messagesPerSecond: 100, burst: 200 });
    for (const limits of [undefined, null, 7, {}, { messagesPerSecond: 0, burst: 200 }, { messagesPerSecond: 100, burst: 0 }, { messagesPerSecond: Infinity, burst: 1 }, { messagesPerSecond: '100', burst: 200 }]) {
      assert.equal(Pacer.limitsOf({ limits }), null, JSON.stringify(limits));
    }
  });
});

describe('a client against a server that allows 10 frames a second (burst 20)', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { limits: { messages_per_second: 10, burst: 20, rate_violations_before_close: 3 }, delivery: { ack_timeout: 60 } } });
  });
  after(() => server.close());

  test('re-joins 40 groups after a reconnect at its pace: no refusal, no 4029, every group joined again', async () => {
    const proxy = await tcpProxy(server.port);
    const rx = sdkClient(proxy.port, { user: 'many-groups', reconnect: { initialMs: 50, soonMs: 50, maxMs: 500 } });
    await rx.client.connect();
    const groups = Array.from({ length: 40 }, (_, i) => `room${i}`);
    await Promise.all(groups.map((g) => rx.client.join(g)));
    const reopened = nextOpen(rx.client);
    proxy.cut();
    await reopened;
    const rejoined = new Set<string>();
    rx.client.on('joined', (j) => rejoined.add(j.group));
    await until(() => (rejoined.size === groups.length ? true : undefined), 'all 40 joined again', 15_000);
    const sender = await member(server.port, 'room-sender', ['room39']);
    sender.send({ op: 'pub', group: 'room39', data: 'after the reconnect' });
    assert.equal((await rx.received(1)).at(-1)!.data, 'after the reconnect');
    assert.deepEqual(rx.errors, []);
    assert.deepEqual(rx.disconnects, [1006]);
    sender.close();
    await rx.client.close();
    await proxy.close();
  });

  test('acknowledges a backlog of 300 stored messages in few frames: each handed over once, none delivered again, no 4029', async () => {
    for (let n = 0; n < 300; n++) await server.send('backlogged', { n });
    const before = (await getJson(server.port, '/stats')).body.totals as Record<string, number>;
    const rx = sdkClient(server.port, { user: 'backlogged' });
    await rx.client.connect();
    assert.deepEqual((await rx.received(300)).map((m) => (m.data as { n: number }).n), Array.from({ length: 300 }, (_, n) => n));
    const acked = async (): Promise<number> => ((await getJson(server.port, '/stats')).body.messaging as Record<string, number>).acked ?? 0;
    await until(async () => ((await acked()) >= 300 ? true : undefined), 'all 300 acknowledged', 10_000);
    const after = (await getJson(server.port, '/stats')).body.totals as Record<string, number>;
    // One frame an ack would be 300 frames, 15 times the burst: a 4029 within the first second.
    assert.ok(after.frames_in! - before.frames_in! < 30, `${after.frames_in! - before.frames_in!} frames in`);
    assert.deepEqual([rx.errors, rx.disconnects, rx.client.stats.duplicates], [[], [], 0]);
    await rx.client.close();
  });

  test('a user with two tabs gets 1,500 sends on both, each acknowledging all of them: neither is refused (the second ack of each id is unknown)', async () => {
    const tabs = [sdkClient(server.port, { user: 'two-tabs' }), sdkClient(server.port, { user: 'two-tabs' })];
    for (const tab of tabs) await tab.client.connect();
    for (let n = 0; n < 1500; n++) await server.send('two-tabs', { n });
    for (const tab of tabs) await tab.received(1500, () => true, 30_000);
    for (const tab of tabs) {
      assert.deepEqual([tab.errors, tab.disconnects], [[], []]);
      await tab.client.close();
    }
  });

  test('a listener that closes the client mid-backlog: the messages handed over before are acknowledged, not delivered again', async () => {
    for (let n = 0; n < 10; n++) await server.send('closer', { n });
    const first = sdkClient(server.port, { user: 'closer' });
    first.client.on('message', (m) => {
      if ((m.data as { n: number }).n === 4) void first.client.close();
    });
    await first.client.connect();
    await until(() => (first.client.state === 'closed' ? true : undefined), 'closed by its listener');
    const again = sdkClient(server.port, { user: 'closer' });
    await again.client.connect();
    assert.deepEqual((await again.received(6)).map((m) => (m.data as { n: number }).n), [4, 5, 6, 7, 8, 9]);
    await again.client.close();
  });

  test('a request that times out while its frame waits for the pace is not sent after', async () => {
    const rx = sdkClient(server.port, { user: 'impatient', requestTimeoutMs: 300 });
    await rx.client.connect();
    const results = await Promise.allSettled(Array.from({ length: 20 }, (_, n) => rx.client.send('patient', { n })));
    const stored = results.filter((r) => r.status === 'fulfilled').length;
    assert.ok(stored < 20, 'some timed out waiting for their turn');
    const patient = sdkClient(server.port, { user: 'patient' });
    await patient.client.connect();
    await patient.received(stored);
    await sleep(500);
    assert.equal(patient.messages.length, stored, 'only those acknowledged were stored');
    await rx.client.close();
    await patient.client.close();
  });

  test('an ack of several ids in one frame; more than welcome.limits.ackIds, or a bad one among them, is E_BAD_FRAME and acknowledges none', async () => {
    for (let n = 0; n < 3; n++) await server.send('raw-acker', { n });
    const raw = await member(server.port, 'raw-acker');
    const ids: string[] = [];
    while (ids.length < 3) {
      const f = await raw.next((x) => x.op === 'msg' || x.op === 'batch');
      for (const m of f.op === 'batch' ? (f.msgs as Array<{ id: string }>) : [f as unknown as { id: string }]) ids.push(m.id);
    }
    raw.send({ op: 'ack', ids: [...ids, 'x\ud800'], ref: 'bad' });
    assert.equal((await raw.next((f) => f.ref === 'bad')).code, 'E_BAD_FRAME');
    assert.equal(raw.welcome.limits && (raw.welcome.limits as { ackIds: number }).ackIds, MAX_ACK_IDS);
    raw.send({ op: 'ack', ids: Array.from({ length: MAX_ACK_IDS + 1 }, (_, i) => `m${i}`), ref: 'many' });
    assert.match(String((await raw.next((f) => f.ref === 'many')).message), new RegExp(`ids \\(1 to ${MAX_ACK_IDS}\\)`));
    raw.send({ op: 'ack', ids });
    await settle(raw);
    raw.close();
    const again = await member(server.port, 'raw-acker');
    await settle(again);
    assert.equal(again.welcome.pending, 0, 'all three acknowledged by the one frame');
    again.close();
  });
});

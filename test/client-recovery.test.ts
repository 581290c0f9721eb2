/**
 * Exact recovery of group messages (pubs, at most once on the wire) through the SDK, in groups
 * that keep history: the client remembers each group's last offset and epoch, re-joins with
 * `since` after any reconnect, and drops what it already saw, so the application sees every
 * message once and in order across a shard crash, a connection reset mid-stream, and a server
 * restart (history.persist keeps the epoch). When the server cannot replay (history too
 * short), the SDK says so with a `gap` instead of pretending.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Message } from '../src/client/index.js';
import type { RunningServer } from '../src/index.js';
import { member, type TestClient } from './helpers/client.js';
import { until } from './helpers/messaging.js';
import { nextOpen, sdkClient, type RecordingClient } from './helpers/sdk.js';
import { startInProcess, startProcess, tempDataDir, testConfig } from './helpers/server.js';
import { tcpProxy } from './helpers/tcp-proxy.js';

const FAST = { initialMs: 50, soonMs: 50, maxMs: 500 };
const HISTORY = { websocket: { history: [{ pattern: 'chat.*', size: 10_000 }, { pattern: 'short.*', size: 5 }] } };
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const seqs = (messages: Message[], group: string): number[] => messages.filter((m) => m.group === group).map((m) => (m.data as { seq: number }).seq);

/** A raw publisher of `{seq}` pubs to `group`, `perTick` every millisecond or so, until stopped. */
function publisher(client: TestClient, group: string, perTick = 2): { stop(): Promise<number> } {
  let seq = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      for (let i = 0; i < perTick; i++) client.send({ op: 'pub', group, data: { seq: ++seq } });
      await sleep(1);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return seq;
    },
  };
}

/** The SDK client on `shard` (the kernel picks a shard per connection: open until one lands there). */
async function sdkOnShard(port: number, shard: number, user: string): Promise<RecordingClient> {
  for (let attempt = 0; attempt < 60; attempt++) {
    const rx = sdkClient(port, { user, reconnect: FAST });
    const welcome = await rx.client.connect();
    if (welcome.shard === shard) return rx;
    await rx.client.close();
  }
  throw new Error(`no connection on shard ${shard}`);
}

describe('exact recovery of history groups', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess(HISTORY);
  });
  after(() => server.close());

  test('joined tells the group’s position; a group without history says it has none', async () => {
    const rx = sdkClient(server.port, { user: 'pos' });
    await rx.client.connect();
    const chat = await rx.client.join('chat.pos');
    assert.equal(chat.history, true);
    assert.equal(chat.recovered, true);
    assert.equal(typeof chat.position!.epoch, 'string');
    assert.deepEqual(await rx.client.join('plain'), { group: 'plain', history: false });
    await rx.client.close();
  });

  test('a shard crash while another shard publishes: every pub is handed over once, in order, after the re-join recovered', async () => {
    const tx = await member(server.port, 'crash-pub', ['chat.crash']);
    const victimShard = ((tx.welcome.shard as number) + 1) % 2;
    const rx = await sdkOnShard(server.port, victimShard, 'crash-sub');
    const joins: Array<{ rejoin: boolean; recovered?: boolean }> = [];
    rx.client.on('joined', (j) => joins.push(j));
    await rx.client.join('chat.crash');
    const pubs = publisher(tx, 'chat.crash');
    await until(() => (seqs(rx.messages, 'chat.crash').length > 50 ? true : undefined), 'messages before the crash');
    const reopened = nextOpen(rx.client);
    server.injectShardCrash(victimShard);
    await reopened;
    await sleep(200);
    const last = await pubs.stop();
    await until(() => (seqs(rx.messages, 'chat.crash').at(-1) === last ? true : undefined), `message ${last}`, 20_000);
    assert.deepEqual(seqs(rx.messages, 'chat.crash'), Array.from({ length: last }, (_, i) => i + 1));
    assert.ok(rx.disconnects.includes(1012));
    const rejoin = joins.at(-1)!;
    assert.deepEqual([rejoin.rejoin, rejoin.recovered], [true, true], 'the re-join recovered');
    assert.deepEqual(rx.gaps, []);
    tx.close();
    await rx.client.close();
    await server.whenRestarted(victimShard, 1);
  });

  test('connections reset mid-stream, five times: every pub once, in order, and the replays overlapped what was already seen', async () => {
    const proxy = await tcpProxy(server.port);
    const tx = await member(server.port, 'reset-pub', ['chat.reset']);
    const rx = sdkClient(proxy.port, { user: 'reset-sub', reconnect: FAST });
    await rx.client.connect();
    await rx.client.join('chat.reset');
    const pubs = publisher(tx, 'chat.reset', 3);
    for (let cut = 0; cut < 5; cut++) {
      await sleep(150);
      const reopened = nextOpen(rx.client);
      proxy.cut();
      await reopened;
    }
    await sleep(150);
    const last = await pubs.stop();
    await until(() => (seqs(rx.messages, 'chat.reset').at(-1) === last ? true : undefined), `message ${last}`, 20_000);
    assert.deepEqual(seqs(rx.messages, 'chat.reset'), Array.from({ length: last }, (_, i) => i + 1));
    assert.deepEqual(rx.gaps, []);
    tx.close();
    await rx.client.close();
    await proxy.close();
  });

  test('more missed than the group keeps: the re-join is not recovered, and the SDK reports a gap', async () => {
    const proxy = await tcpProxy(server.port);
    const tx = await member(server.port, 'short-pub', ['short.room']);
    const rx = sdkClient(proxy.port, { user: 'short-sub', reconnect: { ...FAST, initialMs: 400 } });
    await rx.client.connect();
    await rx.client.join('short.room');
    tx.send({ op: 'pub', group: 'short.room', data: { seq: 1 } });
    await rx.received(1);
    proxy.freeze = true; // the client hears nothing while 20 more are published
    for (let seq = 2; seq <= 21; seq++) tx.send({ op: 'pub', group: 'short.room', data: { seq } });
    await sleep(100);
    const reopened = nextOpen(rx.client);
    proxy.freeze = false;
    proxy.cut();
    await reopened;
    await until(() => (rx.gaps.length > 0 ? true : undefined), 'the gap reported');
    assert.deepEqual(rx.gaps[0], { group: 'short.room', reason: 'not_recovered' });
    tx.send({ op: 'pub', group: 'short.room', data: { seq: 22 } });
    await until(() => (seqs(rx.messages, 'short.room').includes(22) ? true : undefined), 'live messages after the gap');
    assert.equal(new Set(seqs(rx.messages, 'short.room')).size, seqs(rx.messages, 'short.room').length, 'nothing twice');
    tx.close();
    await rx.client.close();
    await proxy.close();
  });
});

describe('exact recovery across a server restart (history.persist)', () => {
  test('pubs published after the restart but before the receiver re-joined are replayed; nothing twice, nothing out of order', async () => {
    const dataDir = tempDataDir();
    const config = (port = 0): Record<string, unknown> => testConfig({ ...HISTORY, websocket: { ...HISTORY.websocket, server: { port } }, history: { persist: true }, store: { data_dir: dataDir } });
    const first = await startProcess(config());
    const port = first.port;
    // The receiver's path stays dead until the publisher is back and has published 30 more.
    const proxy = await tcpProxy(port);
    const rx = sdkClient(proxy.port, { user: 'restart-sub', reconnect: FAST, connectTimeoutMs: 500 });
    const tx = sdkClient(port, { user: 'restart-pub', reconnect: FAST });
    await Promise.all([rx.client.connect(), tx.client.connect()]);
    await Promise.all([rx.client.join('chat.restart'), tx.client.join('chat.restart')]);
    const published: number[] = [];
    const publish = async (from: number, to: number): Promise<void> => {
      for (let seq = from; seq <= to; seq++) await tx.client.publish('chat.restart', { seq }).then(() => published.push(seq), () => undefined);
    };
    await publish(1, 30);
    await rx.received(30);
    const txBack = nextOpen(tx.client, 60_000);
    proxy.freeze = true;
    await first.stop('SIGTERM');
    const second = await startProcess(config(port));
    await txBack;
    await publish(31, 60);
    assert.equal(seqs(rx.messages, 'chat.restart').length, 30, 'nothing reached the receiver yet');
    proxy.freeze = false;
    await until(() => (seqs(rx.messages, 'chat.restart').length >= published.length ? true : undefined), 'the replay after the restart', 30_000);
    await sleep(300);
    assert.deepEqual(seqs(rx.messages, 'chat.restart'), published);
    assert.deepEqual(rx.gaps, []);
    await Promise.all([rx.client.close(), tx.client.close()]);
    await proxy.close();
    await second.stop();
  });
});

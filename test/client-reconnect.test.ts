/**
 * The SDK's reconnect policy and exactly-once hand-over, against the real server broken the
 * ways production breaks it: a shard crash (1012), a server restart (its drain's 1012, then a
 * new process on the same store), a TCP connection reset mid-stream with the client's acks
 * lost, a path that goes silent, an expiring token, a client over its rate. In every case the
 * application sees each message once, in order, and nothing acknowledged by the server is lost.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { OcsError, type Message } from '../src/client/index.js';
import type { RunningServer } from '../src/index.js';
import { MAX_ACK_IDS } from '../src/protocol/frames.js';
import { member } from './helpers/client.js';
import { until } from './helpers/messaging.js';
import { nextOpen, sdkClient } from './helpers/sdk.js';
import { startInProcess, startProcess, tempDataDir, testConfig } from './helpers/server.js';
import { tcpProxy } from './helpers/tcp-proxy.js';
import { signToken } from './helpers/tokens.js';

const FAST = { initialMs: 50, soonMs: 50, maxMs: 500, penaltyMs: 300 };
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const seqs = (messages: Message[]): number[] => messages.map((m) => (m.data as { seq: number }).seq);

/** Every seq in `expected` exactly once, nothing else twice, ascending. */
function assertOnceInOrder(got: number[], expected: number[]): void {
  assert.equal(new Set(got).size, got.length, `a message was handed over twice: ${got.join(',')}`);
  for (const seq of expected) assert.ok(got.includes(seq), `message ${seq} lost`);
  assert.deepEqual(got, [...got].sort((a, b) => a - b), 'out of order');
}

describe('reconnecting against an in-process server', () => {
  let server: RunningServer;
  before(async () => {
    // A long ack timeout: every redelivery below comes from a reconnect, none from the timer.
    server = await startInProcess({ websocket: { delivery: { ack_timeout: 60 } } });
  });
  after(() => server.close());

  test('a TCP reset mid-stream, with the acks in flight lost: every stored message is handed over once, in order', async () => {
    const proxy = await tcpProxy(server.port);
    const rx = sdkClient(proxy.port, { user: 'tcp-rx', reconnect: FAST });
    await rx.client.connect();
    const total = 300;
    const sending = (async () => {
      for (let seq = 1; seq <= total; seq++) {
        const cut = seq % 100 === 50;
        // From this message on the client keeps receiving and acknowledging, but its acks never
        // arrive; then the connection dies. (Set before the send: a message reaches its online
        // recipient while its commit runs, so by the time send() resolves it may be acknowledged.)
        if (cut) proxy.dropUpstream = true;
        await server.send('tcp-rx', { seq });
        if (cut) {
          await sleep(100);
          proxy.cut();
          proxy.dropUpstream = false;
        } else if (seq % 10 === 0) {
          await sleep(2);
        }
      }
    })();
    await sending;
    await rx.received(total, () => true, 30_000);
    await sleep(200); // a late duplicate would show now
    assertOnceInOrder(seqs(rx.messages), Array.from({ length: total }, (_, i) => i + 1));
    assert.ok(rx.client.stats.duplicates > 0, 'the server did redeliver: the SDK dropped duplicates');
    assert.ok(rx.disconnects.length >= 3 && rx.disconnects.every((c) => c === 1006), `disconnects: ${rx.disconnects}`);
    await rx.client.close();
    await proxy.close();
  });

  test('a shard crash (1012): reconnect soon, re-join every group, stored messages sent meanwhile arrive once', async () => {
    const rx = sdkClient(server.port, { user: 'crash-rx', reconnect: FAST });
    const welcome = await rx.client.connect();
    await rx.client.join('crash-room');
    const reopened = nextOpen(rx.client);
    server.injectShardCrash(welcome.shard);
    await until(() => (rx.disconnects.length > 0 ? true : undefined), 'the disconnect');
    assert.equal(rx.disconnects[0], 1012);
    for (let seq = 1; seq <= 20; seq++) await server.send('crash-rx', { seq });
    assert.equal((await reopened).reconnected, true);
    await rx.received(20);
    // Re-joined: a pub from another member reaches it.
    const other = await member(server.port, 'crash-tx', ['crash-room']);
    await until(async () => {
      other.send({ op: 'pub', group: 'crash-room', data: { seq: 1000 } });
      await sleep(50);
      return rx.messages.some((m) => m.group === 'crash-room') ? true : undefined;
    }, 'a pub after the re-join');
    other.close();
    assertOnceInOrder(seqs(rx.messages.filter((m) => m.group === undefined)), Array.from({ length: 20 }, (_, i) => i + 1));
    await rx.client.close();
    await server.whenRestarted(welcome.shard, 1);
  });

  test('a silent path: no frame for two heartbeats, the client gives the connection up and reconnects', async () => {
    const proxy = await tcpProxy(server.port);
    const rx = sdkClient(proxy.port, { user: 'silent-rx', reconnect: FAST, heartbeatMs: 150 });
    await rx.client.connect();
    const reopened = nextOpen(rx.client);
    proxy.freeze = true;
    await until(() => (rx.disconnects.length > 0 ? true : undefined), 'the heartbeat giving up', 5000);
    proxy.freeze = false;
    await reopened;
    await server.send('silent-rx', { seq: 1 });
    await rx.received(1);
    await rx.client.close();
    await proxy.close();
  });

  test("a burst of requests over the server's rate (30 publishes, 10 a second allowed) waits its turn in the client: all acknowledged, in order, no refusal, no 4029", async () => {
    const strict = await startInProcess({ websocket: { limits: { messages_per_second: 10, burst: 10, rate_violations_before_close: 3 } } });
    const rx = sdkClient(strict.port, { user: 'flood' });
    const welcome = await rx.client.connect();
    assert.deepEqual(welcome.limits, { messagesPerSecond: 10, burst: 10, ackIds: MAX_ACK_IDS });
    await rx.client.join('flood-room');
    const results = await Promise.allSettled(Array.from({ length: 30 }, (_, i) => rx.client.publish('flood-room', i)));
    assert.deepEqual(results.map((r) => r.status), results.map(() => 'fulfilled'));
    assert.deepEqual((await rx.received(30)).map((m) => m.data), Array.from({ length: 30 }, (_, i) => i));
    assert.deepEqual([rx.errors, rx.disconnects], [[], []]);
    await rx.client.close();
    await strict.close();
  });
});

describe('tokens', () => {
  const secret = 'client-token-secret';
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { auth: { secret, allow_anonymous: false } } });
  });
  after(() => server.close());

  test('a token callback is asked again before expiry: with tokens that last 2 s, the connection stays up for 5 s without a 4001', async () => {
    const shortLived = await startInProcess({ websocket: { auth: { secret, allow_anonymous: false, max_lifetime: 2 } } });
    let asked = 0;
    const rx = sdkClient(shortLived.port, { token: () => (asked++, signToken({}, { sub: 'renewer', secret })) });
    const welcome = await rx.client.connect();
    assert.equal(typeof welcome.expiresAt, 'number');
    await sleep(5000);
    assert.deepEqual(rx.disconnects, []);
    assert.ok(asked >= 3, `asked ${asked} times`);
    await shortLived.send('renewer', { seq: 1 });
    await rx.received(1);
    await rx.client.close();
    await shortLived.close();
  });

  test('a 4001 (an expired token) makes the client ask for a fresh token, then reconnect', async () => {
    const tokens = [signToken({}, { sub: 'late', secret, exp: Math.floor(Date.now() / 1000) - 60 }), signToken({}, { sub: 'late', secret })];
    const rx = sdkClient(server.port, { token: () => tokens.shift() ?? signToken({}, { sub: 'late', secret }), reconnect: FAST });
    const welcome = await rx.client.connect();
    assert.equal(welcome.user, 'late');
    assert.deepEqual(rx.disconnects, [4001]);
    await rx.client.close();
  });

  test('a fixed token that the server refuses: the client stops (closed), it cannot do better', async () => {
    const rx = sdkClient(server.port, { token: 'not-a-jwt', reconnect: FAST });
    const closed = new Promise<{ code: number }>((resolve) => rx.client.once('closed', resolve));
    await assert.rejects(rx.client.connect(), (err: unknown) => err instanceof OcsError && err.code === 'E_CLOSED');
    assert.equal((await closed).code, 4001);
    assert.equal(rx.client.state, 'closed');
  });
});

describe('a server restart (SIGTERM, then a new process on the same port and store)', () => {
  test('both clients come back by themselves; every send the sender saw acknowledged reaches the receiver once, in order', async () => {
    const dataDir = tempDataDir();
    const first = await startProcess(testConfig({ store: { data_dir: dataDir } }));
    const port = first.port;
    const rx = sdkClient(port, { user: 'restart-rx', reconnect: FAST });
    const tx = sdkClient(port, { user: 'restart-tx', reconnect: FAST });
    await Promise.all([rx.client.connect(), tx.client.connect()]);
    const stored: number[] = [];
    const unknown: number[] = [];
    let second: Awaited<ReturnType<typeof startProcess>> | null = null;
    for (let seq = 1; seq <= 120; seq++) {
      const sent = tx.client.send('restart-rx', { seq }).then(
        () => stored.push(seq),
        (err: OcsError) => {
          // Closed before the ack: the outcome is unknown (stored or not), and the SDK says so.
          assert.equal(err.code, 'E_DISCONNECTED');
          unknown.push(seq);
        },
      );
      if (seq === 40) {
        await first.stop('SIGTERM');
        second = await startProcess(testConfig({ websocket: { server: { port } }, store: { data_dir: dataDir } }));
      }
      await sent;
    }
    try {
      await rx.received(stored.length, (m) => stored.includes((m.data as { seq: number }).seq), 30_000);
      await sleep(300);
      const got = seqs(rx.messages);
      assertOnceInOrder(got, stored);
      assert.ok(got.every((seq) => stored.includes(seq) || unknown.includes(seq)));
      // SIGTERM drains: connections are closed with 1012 (server restarting), spread over drain_window.
      assert.ok(rx.disconnects.includes(1012) && tx.disconnects.includes(1012), `disconnects ${rx.disconnects} / ${tx.disconnects}`);
    } finally {
      // Also when an assertion failed: clients left open would keep reconnecting, and the file never ends.
      await Promise.all([rx.client.close(), tx.client.close()]);
      await second!.stop();
    }
  });
});

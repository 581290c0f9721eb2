/**
 * Two server processes on one store: the drain (SIGTERM) of the one holding the store's lease,
 * and the take-over by the one standing by, as a pm2 reload runs them (test/pm2.test.ts runs
 * pm2 itself). Real processes, real sockets, real LMDB in a temp directory.
 */
import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { describe, test } from 'node:test';
import { connect, member, type Frame, type TestClient } from './helpers/client.js';
import { nextMsgs, settle, until } from './helpers/messaging.js';
import { startProcess, tempDataDir, testConfig, type ServerProcess } from './helpers/server.js';

const STANDING_BY = 'the store is held by another process: this one delivers only the messages it accepts until that one releases the store (a pm2 reload hand-over) or exits';
const TAKEN_OVER = 'store lease taken over: this process delivers the stored messages now';

/** Sends `data` to `to` and waits for the sender's ack (the message is stored). */
async function sendAcked(sender: TestClient, to: string, data: unknown, ref: string): Promise<string> {
  sender.send({ op: 'send', to, data, ref });
  const ack = await sender.next((f) => (f.op === 'ack' || f.op === 'err') && f.ref === ref);
  assert.equal(ack.op, 'ack', JSON.stringify(ack));
  return ack.id as string;
}

async function ackAll(client: TestClient, msgs: Frame[]): Promise<void> {
  for (const m of msgs) client.send({ op: 'ack', id: m.id });
  await settle(client);
}

/** No further `msg` or `batch` within `ms`. */
async function nothingMore(client: TestClient, ms = 300): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
  await settle(client);
  assert.deepEqual(client.frames.filter((f) => f.op === 'msg' || f.op === 'batch'), []);
}

function logged(server: ServerProcess, msg: string): Promise<Record<string, unknown>> {
  return until(() => server.logs.find((line) => line.msg === msg), msg);
}

describe('hand-over between two processes on one store', () => {
  test('the process that starts second stands by; the first one drains, releases the store, and every stored message is delivered once by the second', async () => {
    const dataDir = tempDataDir();
    const first = await startProcess(testConfig({ store: { data_dir: dataDir } }));
    assert.equal(first.logs.find((line) => line.msg === 'ready')!.ownsStore, true);
    const sender = await member(first.port, 'sender');
    const ids = [];
    for (let n = 0; n < 5; n++) ids.push(await sendAcked(sender, 'bob', { n }, `s${n}`));
    sender.close();
    // Same store, same port: what pm2 reload starts.
    const second = await startProcess(testConfig({ store: { data_dir: dataDir }, websocket: { server: { port: first.port } } }));
    try {
      assert.equal(second.logs.find((line) => line.msg === 'ready')!.ownsStore, false);
      assert.ok(second.logs.some((line) => line.msg === STANDING_BY));
      assert.equal(await first.stop('SIGTERM'), 0, first.stderr());
      assert.ok(first.logs.some((line) => line.msg === 'store lease released'));
      const taken = await logged(second, TAKEN_OVER);
      assert.equal(taken.why, 'released');
      assert.equal(taken.loaded, 5);
      const bob = await member(second.port, 'bob');
      assert.equal(bob.welcome.pending, 5);
      const msgs = await nextMsgs(bob, 5);
      assert.deepEqual(msgs.map((m) => m.id), ids, 'in order, each once');
      await ackAll(bob, msgs);
      await nothingMore(bob);
      bob.close();
    } finally {
      await second.stop('SIGTERM');
    }
  });

  test('a holder killed with SIGKILL is taken over at once: nothing it acknowledged is lost', async () => {
    const dataDir = tempDataDir();
    const first = await startProcess(testConfig({ store: { data_dir: dataDir } }));
    const sender = await member(first.port, 'sender');
    const ids = [];
    for (let n = 0; n < 3; n++) ids.push(await sendAcked(sender, 'bob', { n }, `s${n}`));
    const second = await startProcess(testConfig({ store: { data_dir: dataDir }, websocket: { server: { port: first.port } } }));
    try {
      assert.equal(second.logs.find((line) => line.msg === 'ready')!.ownsStore, false);
      first.child.kill('SIGKILL');
      await first.exited;
      const taken = await logged(second, TAKEN_OVER);
      assert.equal(taken.why, 'its process has exited');
      const bob = await member(second.port, 'bob');
      const msgs = await nextMsgs(bob, 3);
      assert.deepEqual(msgs.map((m) => m.id), ids);
      await ackAll(bob, msgs);
      bob.close();
    } finally {
      await second.stop('SIGTERM');
    }
  });

  test('standing by, a process delivers what it accepts itself; its take-over neither loads those again nor brings back the acknowledged, and reaches recipients already connected', async () => {
    const dataDir = tempDataDir();
    const first = await startProcess(testConfig({ store: { data_dir: dataDir } }));
    const oldSender = await member(first.port, 'old-sender');
    const fromFirst = await sendAcked(oldSender, 'carol', 'stored by the first', 'a');
    oldSender.close();
    // Its own port, so that each client reaches the process the test means.
    const second = await startProcess(testConfig({ store: { data_dir: dataDir } }));
    try {
      assert.equal(second.logs.find((line) => line.msg === 'ready')!.ownsStore, false);
      const carol = await member(second.port, 'carol');
      assert.equal(carol.welcome.pending, 0, 'the first process holds what is stored for carol');
      const sender = await member(second.port, 'sender');
      const own = await sendAcked(sender, 'carol', 'stored by the second', 'b');
      const [delivered] = await nextMsgs(carol, 1);
      assert.equal(delivered!.id, own, 'a process standing by delivers what it accepted');
      await ackAll(carol, [delivered!]);
      const forErin = await sendAcked(sender, 'erin', 'waits for erin', 'c');
      assert.equal(await first.stop('SIGTERM'), 0);
      const taken = await logged(second, TAKEN_OVER);
      assert.equal(taken.loaded, 1, "only the first process's message: not the second's own, not the acknowledged one");
      const [handedOver] = await nextMsgs(carol, 1);
      assert.equal(handedOver!.id, fromFirst, 'carol, connected already, gets it without reconnecting');
      await ackAll(carol, [handedOver!]);
      await nothingMore(carol);
      const erin = await member(second.port, 'erin');
      const msgs = await nextMsgs(erin, 1);
      assert.deepEqual(msgs.map((m) => m.id), [forErin]);
      await ackAll(erin, msgs);
      await nothingMore(erin);
      for (const client of [carol, sender, erin]) client.close();
    } finally {
      await second.stop('SIGTERM');
    }
  });

  test('processes that stood by and stopped first (an aborted reload; one stopped, one killed): the holder delivers what they acknowledged, a scheduled one on time', async () => {
    const dataDir = tempDataDir();
    const holder = await startProcess(testConfig({ store: { data_dir: dataDir } }));
    const stopped = await startProcess(testConfig({ store: { data_dir: dataDir } }));
    const killed = await startProcess(testConfig({ store: { data_dir: dataDir } }));
    try {
      const viaStopped = await member(stopped.port, 'sender');
      const now = await sendAcked(viaStopped, 'bob', 'now', 'a');
      const dueAt = Date.now() + 2000;
      viaStopped.send({ op: 'send', to: 'bob', data: 'later', ref: 'b', at: dueAt });
      const scheduled = await viaStopped.next((f) => f.ref === 'b');
      assert.equal(scheduled.op, 'ack', JSON.stringify(scheduled));
      const viaKilled = await member(killed.port, 'sender');
      const fromKilled = await sendAcked(viaKilled, 'bob', 'from the killed one', 'c');
      for (const client of [viaStopped, viaKilled]) client.close();
      assert.equal(await stopped.stop('SIGTERM'), 0);
      assert.equal(await killed.stop('SIGKILL'), null);
      const bob = await member(holder.port, 'bob');
      // Within a renewal of the holder's lease (every 3 s); the scheduled one not before its time.
      const got: Frame[] = [];
      while (got.length < 3) {
        for (const m of await nextMsgs(bob, 1, 5000)) {
          if (m.id === scheduled.id) assert.ok(Date.now() >= dueAt, `the scheduled message came ${dueAt - Date.now()} ms early`);
          got.push(m);
        }
      }
      assert.deepEqual(got.map((m) => m.id).sort(), [now, fromKilled, scheduled.id].sort());
      await ackAll(bob, got);
      await nothingMore(bob);
      bob.close();
    } finally {
      for (const server of [holder, stopped, killed]) await server.stop('SIGKILL');
    }
  });
});

describe('the drain (SIGTERM, SIGINT, pm2 stop and reload)', () => {
  test('it stops accepting at once, closes the connections with 1012 spread over drain_window, is not held by an idle HTTP keep-alive connection, and exits 0', async () => {
    const server = await startProcess(testConfig({ websocket: { server: { drain_window: 1 } } }));
    const clients = await Promise.all(Array.from({ length: 30 }, (_, i) => member(server.port, `u${i}`)));
    const closedAt: number[] = [];
    const codes = new Set<number>();
    for (const client of clients) void client.closed.then(({ code }) => (closedAt.push(Date.now()), codes.add(code)));
    // A keep-alive HTTP connection that stays open and idle after its answer (a scraper, a health check).
    const idle = netConnect(server.port, '127.0.0.1');
    await new Promise<void>((resolve) => {
      idle.once('connect', () => idle.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n'));
      idle.once('data', () => resolve());
    });
    const stopping = server.stop('SIGTERM');
    await until(() => (closedAt.length > 0 ? true : undefined), 'a first close');
    const refused = await connect(server.port, { query: 'user=late' }).then(
      (client) => (client.close(), 'accepted'),
      (err: Error) => err.message,
    );
    assert.match(refused, /ECONNREFUSED/, 'no listen socket once the drain began');
    assert.equal(await stopping, 0, server.stderr());
    assert.deepEqual([...codes], [1012]);
    assert.equal(closedAt.length, 30);
    const spread = Math.max(...closedAt) - Math.min(...closedAt);
    assert.ok(spread >= 500, `closes spread over ${spread} ms of a 1000 ms window`);
    assert.ok(idle.destroyed || (await new Promise((resolve) => idle.once('close', resolve))) !== undefined);
  });

  test('SIGHUP drains as SIGTERM does, and a second signal during the drain (a second Ctrl-C) changes nothing: every client gets 1012, the process exits 0', async () => {
    for (const [first, second] of [['SIGHUP', 'SIGINT'], ['SIGINT', 'SIGINT']] as const) {
      const server = await startProcess(testConfig({ websocket: { server: { drain_window: 1 } } }));
      const clients = await Promise.all(Array.from({ length: 10 }, (_, i) => member(server.port, `u${i}`)));
      const stopping = server.stop(first);
      await until(() => server.logs.find((line) => line.msg === 'shutting down'), 'the drain');
      server.child.kill(second);
      assert.equal(await stopping, 0, `${first} then ${second}: ${server.stderr()}`);
      assert.deepEqual([...new Set(await Promise.all(clients.map(async (c) => (await c.closed).code)))], [1012], `${first} then ${second}`);
      assert.ok(server.logs.some((line) => line.msg === 'store lease released'), 'the lease is let go');
      assert.equal(server.logs.filter((line) => line.msg === 'shutting down').length, 1, 'one drain');
    }
  });

  for (const drainWindow of [0.2, 0]) {
    test(`deliveries in flight when it starts are acknowledged before their connection closes: none comes back after a restart (drain_window ${drainWindow})`, async () => {
      const dataDir = tempDataDir();
      const config = testConfig({ store: { data_dir: dataDir }, websocket: { server: { drain_window: drainWindow } } });
      const first = await startProcess(config);
      const bob = await member(first.port, 'bob');
      const sender = await member(first.port, 'sender');
      await sendAcked(sender, 'bob', 'in flight', 'x');
      const [msg] = await nextMsgs(bob, 1);
      const stopping = first.stop('SIGTERM');
      // A slow client: it acknowledges 300 ms into the drain.
      await new Promise((resolve) => setTimeout(resolve, 300));
      bob.send({ op: 'ack', id: msg!.id });
      assert.equal((await bob.closed).code, 1012);
      assert.equal(await stopping, 0);
      const second = await startProcess(config);
      try {
        const again = await member(second.port, 'bob');
        assert.equal(again.welcome.pending, 0, 'the ack reached the store before the connection closed');
        again.close();
      } finally {
        await second.stop('SIGTERM');
      }
    });
  }
});

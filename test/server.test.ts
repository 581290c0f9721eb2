import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, getJson, member, membersOnEveryShard } from './helpers/client.js';
import { startInProcess, startProcess, testConfig } from './helpers/server.js';
import type { RunningServer } from '../src/index.js';

describe('a sharded server', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess();
  });
  after(() => server.close());

  test('runs the configured number of shards on one port and reports them in /health', async () => {
    const { status, body } = await getJson(server.port, '/health');
    assert.equal(status, 200);
    assert.equal(body.status, 'ok');
    assert.deepEqual((body.shards as Record<string, unknown>).configured, 2);
    assert.deepEqual((body.shards as Record<string, unknown>).up, 2);
  });

  test('welcomes a connection with its user, session and shard', async () => {
    const client = await member(server.port, 'alice');
    assert.equal(client.welcome.user, 'alice');
    assert.equal(typeof client.welcome.sid, 'string');
    assert.ok([0, 1].includes(client.welcome.shard as number));
    assert.equal(client.welcome.pending, 0);
    client.close();
  });

  test('a pub reaches every member of the group on every shard, the sender too, once each', async () => {
    const clients = await membersOnEveryShard(server.port, 2, 'room');
    const outsider = await member(server.port, 'outsider', ['elsewhere']);
    const sender = clients[0]!;
    sender.send({ op: 'pub', group: 'room', data: { text: 'hello' }, ref: 'p1' });
    const ack = await sender.next((f) => f.op === 'ack');
    assert.equal(ack.ref, 'p1');
    for (const client of clients) {
      const msg = await client.next((f) => f.op === 'msg');
      assert.equal(msg.id, ack.id);
      assert.equal(msg.from, 'user0');
      assert.equal(msg.group, 'room');
      assert.deepEqual(msg.data, { text: 'hello' });
      assert.equal(msg.pri, 1);
      assert.equal(typeof msg.ts, 'number');
    }
    // Nothing more arrives: no duplicates, and no message for a non-member.
    outsider.send({ op: 'ping', t: 1 });
    await outsider.next((f) => f.op === 'pong');
    for (const client of clients) {
      client.send({ op: 'ping', t: 2 });
      await client.next((f) => f.op === 'pong');
      assert.equal(client.frames.filter((f) => f.op === 'msg').length, 0);
    }
    assert.equal(outsider.frames.filter((f) => f.op === 'msg').length, 0);
    for (const client of [...clients, outsider]) client.close();
  });

  test('messages from one publisher arrive in order on every shard', async () => {
    const clients = await membersOnEveryShard(server.port, 2, 'ordered');
    const count = 500;
    for (let i = 0; i < count; i++) clients[0]!.send({ op: 'pub', group: 'ordered', data: i });
    for (const client of clients) {
      for (let i = 0; i < count; i++) {
        const msg = await client.next((f) => f.op === 'msg');
        assert.equal(msg.data, i);
      }
    }
    for (const client of clients) client.close();
  });

  test('leave stops delivery; ping answers pong with server time', async () => {
    const a = await member(server.port, 'a', ['g']);
    const b = await member(server.port, 'b', ['g']);
    b.send({ op: 'leave', group: 'g', ref: 'l' });
    assert.deepEqual(await b.next((f) => f.op === 'left'), { op: 'left', group: 'g', ref: 'l' });
    a.send({ op: 'pub', group: 'g', data: 'after-leave' });
    await a.next((f) => f.op === 'msg');
    b.send({ op: 'ping', t: 42 });
    const pong = await b.next((f) => f.op === 'pong');
    assert.equal(pong.t, 42);
    assert.ok(Math.abs((pong.st as number) - Date.now()) < 5000);
    assert.equal(b.frames.filter((f) => f.op === 'msg').length, 0);
    a.close();
    b.close();
  });

  test('/stats reports counters summed over shards', async () => {
    const { status, body } = await getJson(server.port, '/stats');
    assert.equal(status, 200);
    const totals = body.totals as Record<string, number>;
    assert.ok(totals.pubs! >= 1);
    assert.ok(totals.deliveries! >= totals.pubs!);
    assert.equal((body.shards as unknown[]).length, 2);
  });

  test('a shard that crashes is restarted while the other keeps serving', async () => {
    const clients = await membersOnEveryShard(server.port, 2, 'survivors');
    const victim = clients.find((c) => c.welcome.shard === 1)!;
    const survivor = clients.find((c) => c.welcome.shard === 0)!;
    const restarted = server.whenRestarted(1, 1);
    server.injectShardCrash(1);
    const closed = await victim.closed;
    assert.equal(closed.code, 1012, 'clients of the crashed shard are told to reconnect');
    // The surviving shard still serves its connections and new ones.
    survivor.send({ op: 'pub', group: 'survivors', data: 'still here' });
    assert.equal((await survivor.next((f) => f.op === 'msg')).data, 'still here');
    await restarted;
    const health = await getJson(server.port, '/health');
    assert.equal(health.body.status, 'ok');
    // The new shard 1 accepts connections again.
    const fresh = await membersOnEveryShard(server.port, 2, 'survivors');
    for (const client of [...clients, ...fresh]) client.close();
  });
});

describe('the server process', () => {
  test('SIGTERM drains: every socket gets 1012 (try again) and the process exits 0', async () => {
    const proc = await startProcess(testConfig());
    const clients = await Promise.all([0, 1, 2, 3].map((i) => member(proc.port, `u${i}`, ['g'])));
    const code = await proc.stop('SIGTERM');
    assert.equal(code, 0, proc.stderr());
    for (const client of clients) assert.equal((await client.closed).code, 1012);
    assert.doesNotMatch(proc.stderr(), /uv_loop_close|Assertion failed/);
    assert.ok(proc.logs.some((l) => l.msg === 'stopped'));
  });

  test('SIGINT exits 0 too, and the start line names version, pid, port and shards', async () => {
    const proc = await startProcess(testConfig());
    const ready = proc.logs.find((l) => l.msg === 'ready')!;
    assert.equal(ready.port, proc.port);
    assert.equal(ready.shards, 2);
    assert.equal(ready.pid, proc.child.pid);
    assert.match(String(ready.version), /^\d+\.\d+\.\d+/);
    assert.equal(proc.logs.filter((l) => l.msg === 'shard started').length, 2);
    await connect(proc.port, { query: 'user=x' });
    assert.equal(await proc.stop('SIGINT'), 0, proc.stderr());
  });

  test('a client that ignores the close handshake does not hold the exit past the shutdown timeout', async () => {
    const proc = await startProcess(testConfig({ websocket: { server: { shutdown_timeout: 5, drain_window: 0 } } }));
    const client = await member(proc.port, 'stubborn');
    // Stop reading: the close frame is never answered.
    (client.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const started = Date.now();
    assert.equal(await proc.stop('SIGTERM'), 0, proc.stderr());
    assert.ok(Date.now() - started < 5000);
  });
});

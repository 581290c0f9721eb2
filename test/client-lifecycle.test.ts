/**
 * The SDK's life cycle against a scripted server (the `ws` package): what an application does
 * from inside its own listeners, joins it cannot make, join answers that cross a leave, and a
 * token callback that fails or never answers.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import { OcsError } from '../src/client/index.js';
import { until } from './helpers/messaging.js';
import { sdkClient } from './helpers/sdk.js';

interface Scripted {
  port: number;
  connections: number;
  wss: WebSocketServer;
  /** Frames from every connection, in arrival order. */
  frames: Array<Record<string, unknown>>;
  close(): Promise<void>;
}

/** A server that runs `onConnection` for each connection and `onFrame` for each frame. */
async function scripted(onConnection: (ws: WebSocket, n: number) => void, onFrame: (ws: WebSocket, frame: Record<string, unknown>) => void = () => {}): Promise<Scripted> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise((resolve) => wss.once('listening', resolve));
  const server: Scripted = {
    port: (wss.address() as { port: number }).port,
    connections: 0,
    wss,
    frames: [],
    close: () => new Promise((resolve) => wss.close(() => resolve())),
  };
  wss.on('connection', (ws) => {
    server.connections++;
    ws.on('message', (raw) => {
      const frame = JSON.parse(raw.toString()) as Record<string, unknown>;
      server.frames.push(frame);
      onFrame(ws, frame);
    });
    onConnection(ws, server.connections);
  });
  return server;
}

const welcome = (ws: WebSocket): void => ws.send(JSON.stringify({ op: 'welcome', user: 'u', sid: 's', shard: 0, pending: 0 }));
const FAST = { initialMs: 20, soonMs: 20, maxMs: 100, penaltyMs: 50 };

test('close() from a disconnect or a state listener is for good: no reconnection, and requests after it fail with E_CLOSED', async () => {
  for (const from of ['disconnect', 'state'] as const) {
    const server = await scripted((ws) => {
      welcome(ws);
      setTimeout(() => ws.close(1012, 'restart'), 20);
    });
    const rx = sdkClient(server.port, { user: 'u', reconnect: FAST, heartbeatMs: 0 });
    if (from === 'disconnect') rx.client.on('disconnect', () => void rx.client.close());
    else rx.client.on('state', (state) => state === 'reconnecting' && void rx.client.close());
    await rx.client.connect();
    await until(() => (rx.client.state === 'closed' ? true : undefined), `closed from the ${from} listener`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(rx.client.state, 'closed', from);
    assert.equal(server.connections, 1, `${from}: no reconnection`);
    await assert.rejects(rx.client.join('room'), (err: unknown) => err instanceof OcsError && err.code === 'E_CLOSED');
    await server.close();
  }
});

test('a request made from a disconnect listener (the state still says open) waits for the next connection and is answered there', async () => {
  const server = await scripted(
    (ws, n) => {
      welcome(ws);
      if (n === 1) setTimeout(() => ws.close(1012, 'restart'), 20);
    },
    (ws, frame) => frame.op === 'pub' && ws.send(JSON.stringify({ op: 'ack', ref: frame.ref, id: 'm1' })),
  );
  const rx = sdkClient(server.port, { user: 'u', reconnect: FAST, heartbeatMs: 0 });
  let published: Promise<string> | null = null;
  rx.client.once('disconnect', () => (published = rx.client.publish('room', 'from the listener')));
  await rx.client.connect();
  await until(() => published ?? undefined, 'the disconnect');
  assert.equal(await published, 'm1');
  assert.equal(server.connections, 2);
  assert.deepEqual(server.frames.filter((f) => f.op === 'pub').map((f) => f.data), ['from the listener']);
  await rx.client.close();
  await server.close();
});

test('a re-join the server refuses is told on `error`, naming the group, which is no longer joined', async () => {
  const server = await scripted(
    (ws, n) => {
      welcome(ws);
      if (n <= 2) setTimeout(() => ws.close(1012, 'restart'), 200);
    },
    (ws, frame) => {
      if (frame.op !== 'join') return;
      const refused = server.connections > 1;
      ws.send(JSON.stringify(refused ? { op: 'err', code: 'E_FORBIDDEN', message: `not allowed to join ${String(frame.group)}`, ref: frame.ref } : { op: 'joined', group: frame.group, ref: frame.ref }));
    },
  );
  const rx = sdkClient(server.port, { user: 'u', reconnect: FAST, heartbeatMs: 0 });
  await rx.client.connect();
  await rx.client.join('room.1');
  const error = await until(() => rx.errors[0], 'the error event');
  assert.ok(error instanceof OcsError && error.code === 'E_FORBIDDEN', String(error));
  assert.match(error.message, /re-join of room\.1 was refused.*not allowed to join room\.1/);
  // Not joined again on the next connection.
  await until(() => (server.connections === 3 ? true : undefined), 'a third connection');
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(server.frames.filter((f) => f.op === 'join').length, 2);
  assert.equal(rx.errors.length, 1);
  await rx.client.close();
  await server.close();
});

test('a join of a name the server cannot take (not a string, empty, over 128 characters) fails alone, at once, and is never sent', async () => {
  const server = await scripted(welcome, (ws, frame) => frame.op === 'join' && ws.send(JSON.stringify({ op: 'joined', group: frame.group, ref: frame.ref })));
  const rx = sdkClient(server.port, { user: 'u', reconnect: FAST, heartbeatMs: 0 });
  // Before the connection too: a join queued for the welcome must not keep it from opening.
  const early = rx.client.join(10n as unknown as string).then(
    () => null,
    (err: unknown) => err,
  );
  await rx.client.connect();
  const refused = await early;
  assert.ok(refused instanceof OcsError && refused.code === 'E_BAD_FRAME');
  for (const bad of ['', 'x'.repeat(129), 'a b', 'x'.repeat(70_000)]) {
    await assert.rejects(rx.client.join(bad), (err: unknown) => err instanceof OcsError && err.code === 'E_BAD_FRAME', JSON.stringify(bad.slice(0, 20)));
  }
  assert.deepEqual(await rx.client.join('room.ok'), { group: 'room.ok', history: false });
  assert.deepEqual(server.frames.filter((f) => f.op === 'join').map((f) => f.group), ['room.ok']);
  assert.equal(server.connections, 1);
  await rx.client.close();
  await server.close();
});

test('join, leave, join: the second join is settled by the answer to its own frame, not by the first one\'s', async () => {
  // Answers every frame 50 ms late, in order, as a busy server does.
  const server = await scripted(welcome, (ws, frame) => {
    const offset = server.frames.length * 5;
    setTimeout(() => {
      if (frame.op === 'join') ws.send(JSON.stringify({ op: 'joined', group: frame.group, ref: frame.ref, offset, epoch: 'e' }));
      if (frame.op === 'leave') ws.send(JSON.stringify({ op: 'left', group: frame.group, ref: frame.ref }));
    }, 50);
  });
  const rx = sdkClient(server.port, { user: 'u', reconnect: false, heartbeatMs: 0 });
  await rx.client.connect();
  void rx.client.join('room').catch(() => undefined);
  const left = rx.client.leave('room');
  const second = rx.client.join('room');
  await left;
  const result = await second;
  const secondJoin = server.frames.filter((f) => f.op === 'join')[1]!;
  assert.equal((result as { position?: { offset: number } }).position?.offset, server.frames.indexOf(secondJoin) * 5 + 5, 'the answer to the second join frame');
  await rx.client.close();
  await server.close();
});

test('a token callback that never answers is given up after connectTimeoutMs and asked again; after a 4001 the refused token is never offered again', async () => {
  const server = await scripted(
    () => {},
    (ws, frame) => {
      if (frame.op !== 'auth') return;
      if (frame.token === 'refused') return ws.close(4001, 'token expired');
      welcome(ws);
    },
  );
  let calls = 0;
  const token = (): Promise<string> => {
    calls++;
    if (calls === 1) return Promise.resolve('refused');
    if (calls === 2) return new Promise<string>(() => {}); // never answers
    if (calls === 3) return Promise.reject(new Error('token endpoint briefly unavailable'));
    return Promise.resolve('fresh');
  };
  const rx = sdkClient(server.port, { token, reconnect: FAST, heartbeatMs: 0, connectTimeoutMs: 300 });
  await rx.client.connect();
  assert.equal(calls, 4);
  assert.deepEqual(server.frames.filter((f) => f.op === 'auth').map((f) => f.token), ['refused', 'fresh']);
  await rx.client.close();
  await server.close();
});

test('a join not answered within requestTimeoutMs fails with E_TIMEOUT but stays wanted: its late answer is told on `joined`, and it is joined again after a reconnect', async () => {
  const server = await scripted(
    (ws, n) => {
      welcome(ws);
      if (n === 1) setTimeout(() => ws.close(1012, 'restart'), 800);
    },
    (ws, frame) => {
      if (frame.op !== 'join') return;
      // The first connection answers its join late (after the client's deadline), the second at once.
      setTimeout(() => ws.send(JSON.stringify({ op: 'joined', group: frame.group, ref: frame.ref })), server.connections === 1 ? 400 : 0);
    },
  );
  const rx = sdkClient(server.port, { user: 'u', reconnect: FAST, heartbeatMs: 0, requestTimeoutMs: 150 });
  const joinedEvents: Array<{ group: string; rejoin: boolean }> = [];
  rx.client.on('joined', (j) => joinedEvents.push({ group: j.group, rejoin: j.rejoin }));
  try {
    await rx.client.connect();
    let outcome: unknown;
    const started = Date.now();
    rx.client.join('slow').then((r) => (outcome = r), (err: unknown) => (outcome = err));
    const failed = await until(() => outcome, 'the join settled', 2000);
    assert.ok(failed instanceof OcsError && failed.code === 'E_TIMEOUT', `settled with ${JSON.stringify(failed)}`);
    assert.match(failed.message, /join of slow in time; it stays wanted/);
    assert.ok(Date.now() - started < 400, 'failed at its deadline, before the late answer');
    await until(() => joinedEvents[0], 'the late answer, told on `joined`');
    assert.deepEqual(joinedEvents, [{ group: 'slow', rejoin: false }]);
    await until(() => (joinedEvents.length === 2 ? true : undefined), 'the re-join after the reconnect');
    assert.deepEqual(joinedEvents[1], { group: 'slow', rejoin: true });
    assert.deepEqual(server.frames.filter((f) => f.op === 'join').map((f) => f.group), ['slow', 'slow']);
    // A later join() of it is answered as usual.
    assert.deepEqual(await rx.client.join('slow'), { group: 'slow', history: false });
  } finally {
    await rx.client.close();
    await server.close();
  }
});

test('close() while the token callback has not answered leaves no timer behind and tells nothing after `closed`', async () => {
  const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const rx = sdkClient(1, { token: () => new Promise<string>(() => {}), reconnect: false, connectTimeoutMs: 300 });
  const connecting = rx.client.connect();
  await new Promise((resolve) => setTimeout(resolve, 50));
  let closedAt = -1;
  rx.client.on('closed', () => void (closedAt = rx.errors.length));
  // Counted either side of the (synchronous) close: no other timer can fire in between.
  const armed = timers();
  const closed = rx.client.close();
  assert.equal(timers(), armed - 1, 'the wait for the token went with close()');
  await closed;
  await assert.rejects(connecting, (err: unknown) => err instanceof OcsError && err.code === 'E_CLOSED');
  await new Promise((resolve) => setTimeout(resolve, 400));
  assert.deepEqual(rx.errors.slice(closedAt).map((e) => e.message), [], 'no error after closed');
});

test('timeouts longer than a timer can wait (Infinity, 2^32 ms) mean never, not at once: connect, heartbeat, join and reconnect delays', { timeout: 10_000 }, async () => {
  const warnings: string[] = [];
  const onWarning = (warning: Error): void => void warnings.push(warning.name);
  process.on('warning', onWarning);
  // Welcomes the first connection 100 ms late and answers its joins 100 ms late; drops every later one at once.
  const server = await scripted(
    (ws, n) => (n === 1 ? setTimeout(() => welcome(ws), 100) : ws.terminate()),
    (ws, frame) => void (frame.op === 'join' && setTimeout(() => ws.send(JSON.stringify({ op: 'joined', group: frame.group, ref: frame.ref })), 100)),
  );
  const long = 2 ** 32;
  const rx = sdkClient(server.port, { user: 'u', connectTimeoutMs: Infinity, heartbeatMs: long, requestTimeoutMs: long, reconnect: { initialMs: long, maxMs: Infinity }, random: () => 0.5 });
  try {
    await rx.client.connect();
    await rx.client.join('g');
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(rx.disconnects, [], 'no heartbeat gave up the connection');
    for (const ws of server.wss.clients) ws.terminate();
    await until(() => (rx.disconnects.length > 0 ? true : undefined), 'the disconnect');
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(server.connections, 1, 'no reconnect at once');
    assert.deepEqual(warnings, []);
  } finally {
    process.off('warning', onWarning);
    await rx.client.close();
    await server.close();
  }
});

/**
 * What a hostile or broken server (or a proxy that mangles frames) can send the SDK: frames
 * that are not JSON, not objects, messages without ids, batches that are not arrays, presence
 * with odd user ids, unknown error codes, answers to refs never sent. None may throw out of
 * the client, and none may reach the application as a message; what cannot be decoded at all
 * is reported (an `error` event, E_BAD_FRAME); frames that inflate to millions of values are
 * client-hostile-values.test.ts's.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import v8 from 'node:v8';
import vm from 'node:vm';
import WebSocket, { WebSocketServer } from 'ws';
import { OcsClient, OcsError } from '../src/client/index.js';
import { until } from './helpers/messaging.js';
import { sdkClient } from './helpers/sdk.js';

test('garbage from the server is ignored; the well-formed frames around it still work', async () => {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise((resolve) => wss.once('listening', resolve));
  const port = (wss.address() as { port: number }).port;
  wss.on('connection', (ws) => {
    ws.on('message', (raw) => {
      const frame = JSON.parse(raw.toString()) as { op: string; ref?: string; group?: string };
      if (frame.op === 'presence') {
        ws.send(JSON.stringify({ op: 'presence', group: frame.group, ref: frame.ref, users: JSON.parse('{"__proto__":2,"bob":1,"bad":"x"}'), total: { users: 2, conns: 3 } }));
      } else if (frame.op === 'join') {
        ws.send(JSON.stringify({ op: 'joined', group: frame.group, ref: frame.ref }));
      }
    });
    const deep = '['.repeat(5000) + ']'.repeat(5000);
    for (const bad of [
      'not json',
      '42',
      'null',
      '[]',
      deep,
      Buffer.from([1, 2, 3]),
      '{"op":"msg"}',
      '{"op":"msg","id":7,"data":1}',
      '{"op":"batch","msgs":"nope"}',
      '{"op":"batch","msgs":[null,1,{"op":"msg"}]}',
      '{"op":"joined","ref":"never-sent","group":"g"}',
      '{"op":"ack","ref":"never-sent","id":"x"}',
      '{"op":"err","code":"E_MADE_UP","message":{"not":"a string"}}',
      '{"op":"presence","group":"g","joins":[1,2]}',
      '{"op":"welcome"}',
      '{"op":"welcome","user":7}',
      // Before the welcome: not for the application.
      '{"op":"msg","id":"early-1","from":"x","data":1,"pri":1,"ts":1}',
      '{"op":"batch","msgs":[{"op":"msg","id":"early-2","from":"x","data":2,"pri":1,"ts":1}]}',
    ]) {
      ws.send(bad);
    }
    ws.send(JSON.stringify({ op: 'welcome', user: 'u', sid: 's', shard: 0, pending: 0 }));
    ws.send(JSON.stringify({ op: 'msg', id: 'good-1', from: 'x', data: { ok: true }, pri: 1, ts: 1 }));
    ws.send(JSON.stringify({ op: 'msg', id: 'good-1', from: 'x', data: { ok: true }, pri: 1, ts: 1 }));
  });
  const rx = sdkClient(port, { user: 'u', reconnect: false, heartbeatMs: 0 });
  const welcome = await rx.client.connect();
  assert.equal(welcome.user, 'u', 'a welcome without user and sid is not one');
  await rx.received(1);
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.deepEqual(rx.messages.map((m) => m.id), ['good-1']);
  assert.ok(rx.errors.every((e) => e instanceof OcsError && (e.code === 'E_INTERNAL' || e.code === 'E_BAD_FRAME')), 'an unknown code is reported as E_INTERNAL');
  const unreadable = rx.errors.filter((e) => (e as OcsError).code === 'E_BAD_FRAME').map((e) => e.message);
  assert.ok(unreadable.some((m) => /is not a frame this client can read .*; it was dropped/.test(m)), 'what cannot be decoded is reported, not dropped silently');
  const snapshot = await rx.client.presence('g');
  assert.deepEqual([...snapshot.users!.entries()], [['__proto__', 2], ['bob', 1]]);
  await rx.client.join('g');
  assert.equal(rx.client.state, 'open');
  await rx.client.close();
  await until(() => (wss.clients.size === 0 ? true : undefined), 'the server side closed');
  await new Promise((resolve) => wss.close(resolve));
});

test('a join refused with E_OVERLOADED is sent again after a pause and then settles; another refusal settles it at once', async () => {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise((resolve) => wss.once('listening', resolve));
  const port = (wss.address() as { port: number }).port;
  const joins: Array<{ group: string; presence?: boolean; at: number }> = [];
  wss.on('connection', (ws) => {
    ws.send(JSON.stringify({ op: 'welcome', user: 'u', sid: 's', shard: 0, pending: 0 }));
    ws.on('message', (raw) => {
      const frame = JSON.parse(raw.toString()) as { op: string; ref?: string; group: string; presence?: boolean };
      if (frame.op !== 'join') return;
      joins.push({ group: frame.group, presence: frame.presence, at: Date.now() });
      const refusals = joins.filter((j) => j.group === frame.group).length;
      if (frame.group === 'busy' && refusals <= 2) ws.send(JSON.stringify({ op: 'err', ref: frame.ref, code: 'E_OVERLOADED', message: 'ring backed up' }));
      else if (frame.group === 'secret') ws.send(JSON.stringify({ op: 'err', ref: frame.ref, code: 'E_FORBIDDEN', message: 'no' }));
      else ws.send(JSON.stringify({ op: 'joined', group: frame.group, ref: frame.ref }));
    });
  });
  // random() = 0: the shortest pauses, 125 ms then 250 ms.
  const rx = sdkClient(port, { user: 'u', reconnect: false, heartbeatMs: 0, random: () => 0 });
  await rx.client.connect();
  const started = Date.now();
  const result = await rx.client.join('busy', { presence: true });
  assert.deepEqual(result, { group: 'busy', history: false });
  const busy = joins.filter((j) => j.group === 'busy');
  assert.equal(busy.length, 3, 'two refusals, then the join that was answered');
  assert.ok(busy.every((j) => j.presence === true), 'each retry is the same join');
  assert.ok(busy[2]!.at - started >= 300, `paused before each retry (${busy[2]!.at - started} ms)`);
  await assert.rejects(rx.client.join('secret'), (err: unknown) => err instanceof OcsError && err.code === 'E_FORBIDDEN');
  await new Promise((resolve) => setTimeout(resolve, 400));
  assert.equal(joins.filter((j) => j.group === 'secret').length, 1, 'a refusal other than E_OVERLOADED is final');
  // The latest join decides about presence events, as on the wire.
  await rx.client.join('busy');
  assert.equal(joins.at(-1)!.presence, undefined);
  await rx.client.close();
  await new Promise((resolve) => wss.close(resolve));
});

/** A server that welcomes each connection, then runs `then` with it. */
async function welcoming(then: (ws: WebSocket, frames: Array<Record<string, unknown>>) => void): Promise<{ port: number; close(): Promise<void> }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise((resolve) => wss.once('listening', resolve));
  wss.on('connection', (ws) => {
    const frames: Array<Record<string, unknown>> = [];
    ws.on('message', (raw) => frames.push(JSON.parse(raw.toString()) as Record<string, unknown>));
    ws.send(JSON.stringify({ op: 'welcome', user: 'u', sid: 's', shard: 0, pending: 0 }));
    then(ws, frames);
  });
  return { port: (wss.address() as { port: number }).port, close: () => new Promise((resolve) => wss.close(() => resolve())) };
}

const msg = (id: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ op: 'msg', id, from: 'x', data: id, pri: 1, ts: 1, ...extra });

test('a request whose data cannot be encoded fails alone with E_BAD_FRAME, queued or sent at once, and leaves nothing to time out later', async () => {
  const server = await welcoming(() => undefined);
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  try {
    const rx = sdkClient(server.port, { user: 'u', reconnect: false, heartbeatMs: 0, requestTimeoutMs: 200 });
    const queued = rx.client.publish('g', { n: 10n });
    const queuedAfter = rx.client.send('bob', 'fine');
    await rx.client.connect();
    await assert.rejects(queued, (err: unknown) => err instanceof OcsError && err.code === 'E_BAD_FRAME' && /cannot be encoded/.test(err.message));
    await assert.rejects(queuedAfter, (err: unknown) => err instanceof OcsError && err.code === 'E_TIMEOUT', 'the request queued behind it was sent (this server never answers)');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    await assert.rejects(rx.client.publish('g', cyclic), (err: unknown) => err instanceof OcsError && err.code === 'E_BAD_FRAME');
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.deepEqual(unhandled, [], 'no orphaned request timed out unheard');
    assert.equal(rx.client.state, 'open');
    await rx.client.close();
  } finally {
    process.off('unhandledRejection', onUnhandled);
    await server.close();
  }
});

test('a listener that closes the client half-way through a batch gets no more of it', async () => {
  const server = await welcoming((ws) => setTimeout(() => ws.send(JSON.stringify({ op: 'batch', msgs: [msg('m1'), msg('m2'), msg('m3')] })), 50));
  const rx = sdkClient(server.port, { user: 'u', reconnect: false, heartbeatMs: 0 });
  rx.client.on('message', (m) => void (m.id === 'm1' && rx.client.close()));
  await rx.client.connect();
  await until(() => (rx.client.state === 'closed' ? true : undefined), 'closed');
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.deepEqual(rx.messages.map((m) => m.id), ['m1']);
  await server.close();
});

test('a new epoch is a gap of reason new_epoch, skipped offsets offset_gap; messages of groups not joined leave no position behind', async () => {
  const joins: Array<Record<string, unknown>> = [];
  const server = await welcoming((ws, frames) => {
    ws.on('message', () => {
      const join = frames.at(-1)!;
      if (join.op !== 'join') return;
      joins.push(join);
      ws.send(JSON.stringify({ op: 'joined', group: join.group, ref: join.ref, offset: 1, epoch: 'e1' }));
      if (join.group !== 'kept') return;
      for (const [id, offset, epoch] of [['a', 2, 'e1'], ['b', 5, 'e1'], ['c', 1, 'e2']] as const) ws.send(JSON.stringify(msg(id, { group: 'kept', offset, epoch })));
    });
    ws.send(JSON.stringify(msg('stray', { group: 'never-joined', offset: 7, epoch: 'e9' })));
  });
  const rx = sdkClient(server.port, { user: 'u', reconnect: false, heartbeatMs: 0 });
  await rx.client.connect();
  await rx.client.join('kept');
  await rx.received(4);
  assert.deepEqual(rx.gaps, [{ group: 'kept', reason: 'offset_gap' }, { group: 'kept', reason: 'new_epoch' }]);
  await rx.client.join('never-joined');
  assert.equal(joins.at(-1)!.since, undefined, 'the stray message before the join recorded no position to recover from');
  await rx.client.close();
  await server.close();
});

test('close() drops the socket of a server that no longer answers within a second, rather than the 30 s ws waits for its close frame', async () => {
  const serverSockets: Array<{ pause(): void; destroy(): void }> = [];
  const server = await welcoming((ws) => {
    const socket = (ws as unknown as { _socket: { pause(): void; destroy(): void } })._socket;
    serverSockets.push(socket);
    setTimeout(() => socket.pause(), 50); // stops reading: the close frame is never answered
  });
  const sockets: WebSocket[] = [];
  class Recorded extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      sockets.push(this);
    }
  }
  const rx = sdkClient(server.port, { user: 'u', reconnect: false, heartbeatMs: 0, WebSocket: Recorded });
  await rx.client.connect();
  await new Promise((resolve) => setTimeout(resolve, 100));
  await rx.client.close();
  await until(() => (sockets[0]!.readyState === WebSocket.CLOSED ? true : undefined), 'the socket dropped', 3000);
  for (const socket of serverSockets) socket.destroy();
  await server.close();
});

test('a frame over maxFrameBytes closes the connection with 1009 before it is decoded, also where the WebSocket class ignores the limit (as browsers do)', async () => {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise((resolve) => wss.once('listening', resolve));
  const port = (wss.address() as { port: number }).port;
  wss.on('connection', (ws) => {
    ws.send(JSON.stringify({ op: 'welcome', user: 'u', sid: 's', shard: 0, pending: 0 }));
    ws.send(JSON.stringify({ op: 'msg', id: 'small', from: 'x', data: 'ok', pri: 1, ts: 1 }));
    ws.send(JSON.stringify({ op: 'msg', id: 'huge', from: 'x', data: 'x'.repeat(4096), pri: 1, ts: 1 }));
  });
  // A browser's WebSocket takes (url, protocols) only, so the limit is the SDK's own check; and
  // its close() throws for a code other than 1000 or 3000-4999 (WHATWG).
  class BrowserLike extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
    }
    override close(code?: number, reason?: string): void {
      if (code !== undefined && code !== 1000 && (code < 3000 || code > 4999)) throw new Error(`InvalidAccessError: close(${code})`);
      super.close(code, reason);
    }
  }
  for (const WebSocketClass of [WebSocket, BrowserLike]) {
    const rx = sdkClient(port, { user: 'u', reconnect: false, heartbeatMs: 0, maxFrameBytes: 2048, WebSocket: WebSocketClass });
    const closed = new Promise<{ code: number }>((resolve) => rx.client.once('closed', resolve));
    await rx.client.connect();
    assert.equal((await closed).code, 1009, WebSocketClass.name);
    assert.deepEqual(rx.messages.map((m) => m.id), ['small'], 'the frame before it was handled, the huge one never');
  }
  await until(() => (wss.clients.size === 0 ? true : undefined), 'both sockets closed, not left open unread');
  assert.throws(() => sdkClient(port, { maxFrameBytes: 0 }), /maxFrameBytes must be an integer of at least 1024, or Infinity/);
  await new Promise((resolve) => wss.close(resolve));
});

test('a welcome stating a rate of one frame in months neither spins a timer nor keeps the frames of requests that timed out', async () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const warnings: string[] = [];
  const onWarning = (warning: Error): void => void warnings.push(warning.name);
  process.on('warning', onWarning);
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise((resolve) => wss.once('listening', resolve));
  wss.on('connection', (ws) => ws.send(JSON.stringify({ op: 'welcome', user: 'u', sid: 's', shard: 0, pending: 0, limits: { messagesPerSecond: 1e-7, burst: 1 } })));
  const rx = sdkClient((wss.address() as { port: number }).port, { user: 'u', reconnect: false, heartbeatMs: 0, requestTimeoutMs: 100 });
  try {
    await rx.client.connect();
    gc();
    const heapBefore = process.memoryUsage().heapUsed;
    // 100 requests of 1 MB each: none can go (the bucket is empty), each times out.
    const sent = Array.from({ length: 100 }, (_, i) => rx.client.publish('g', `${i}`.padEnd(1024 * 1024, 'x')));
    for (const request of sent) await assert.rejects(request, (err: unknown) => err instanceof OcsError && err.code === 'E_TIMEOUT');
    await new Promise((resolve) => setTimeout(resolve, 100));
    gc();
    const kept = process.memoryUsage().heapUsed - heapBefore;
    assert.ok(kept < 20 * 1024 * 1024, `${(kept / 1048576).toFixed(0)} MB still held for requests that failed`);
    assert.deepEqual(warnings.filter((w) => w === 'TimeoutOverflowWarning'), [], 'no timer asked for longer than a timer can wait');
    assert.equal(rx.client.state, 'open');
  } finally {
    process.off('warning', onWarning);
    await rx.client.close();
    await new Promise((resolve) => wss.close(resolve));
  }
});

test('answers of the wrong shape: an ack without an id fails its publish, a history page\'s items that are not messages are left out', async () => {
  const server = await welcoming((ws, frames) => {
    ws.on('message', () => {
      const { op, ref, group } = frames.at(-1)! as { op: string; ref: string; group: string };
      if (op === 'pub') ws.send(JSON.stringify({ op: 'ack', ref, id: group === 'ok' ? 'm1' : 7 }));
      if (op === 'history') ws.send(JSON.stringify({ op: 'history', ref, group, msgs: [null, 1, 'x', { op: 'msg' }, msg('h1', { group, offset: 1, epoch: 'e' })], offset: 1, epoch: 'e' }));
    });
  });
  const rx = sdkClient(server.port, { user: 'u', reconnect: false, heartbeatMs: 0 });
  try {
    await rx.client.connect();
    assert.equal(await rx.client.publish('ok', 1), 'm1');
    await assert.rejects(rx.client.publish('bad', 1), (err: unknown) => err instanceof OcsError && err.code === 'E_INTERNAL' && /malformed ack/.test(err.message));
    const page = await rx.client.history('g');
    assert.deepEqual(page.msgs.map((m) => m.id), ['h1']);
  } finally {
    await rx.client.close();
    await server.close();
  }
});

test('acks waiting for a pace that never comes are bounded: a million stored messages keep a few megabytes, not one ack each', { timeout: 60_000 }, async (t) => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const batches = 100;
  const per = 10_000;
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: { threshold: 0 } });
  await new Promise((resolve) => wss.once('listening', resolve));
  wss.on('connection', (ws) => {
    ws.send(JSON.stringify({ op: 'welcome', user: 'u', sid: 's', shard: 0, pending: 0, limits: { messagesPerSecond: 1e-7, burst: 1, ackIds: 16 } }));
    for (let b = 0; b < batches; b++) ws.send(JSON.stringify({ op: 'batch', msgs: Array.from({ length: per }, (_, i) => msg(`m${b}-${i}`, { ackReq: true })) }), { compress: true });
    ws.send(JSON.stringify(msg('good')));
  });
  // No recording helper: the application here keeps nothing it is handed.
  const client = new OcsClient({ url: `ws://127.0.0.1:${(wss.address() as { port: number }).port}/ws`, WebSocket, user: 'u', reconnect: false, heartbeatMs: 0 });
  let handed = 0;
  client.on('message', () => void handed++);
  try {
    gc();
    const heapBefore = process.memoryUsage().heapUsed;
    await client.connect();
    await until(() => (handed === batches * per + 1 ? true : undefined), 'every message', 50_000);
    await new Promise((resolve) => setTimeout(resolve, 100));
    gc();
    const kept = process.memoryUsage().heapUsed - heapBefore;
    t.diagnostic(`${(kept / 1048576).toFixed(1)} MB kept after ${handed} messages`);
    assert.ok(kept < 12 * 1024 * 1024, `${(kept / 1048576).toFixed(1)} MB kept after ${handed} messages`);
  } finally {
    await client.close();
    await new Promise((resolve) => wss.close(resolve));
  }
});

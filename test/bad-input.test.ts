import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createConnection } from 'node:net';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { connect, getJson, member, type Frame, type TestClient } from './helpers/client.js';
import { startInProcess } from './helpers/server.js';
import type { RunningServer } from '../src/index.js';

describe('bad input hurts only the connection that sent it', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({
      websocket: {
        server: { max_payload: 4096 },
        limits: { bad_frames_before_close: 3 },
      },
    });
  });
  after(() => server.close());

  /** A bystander in `g` that must keep receiving while others misbehave. */
  async function bystanderStillServed(): Promise<void> {
    const watcher = await member(server.port, 'watcher', ['g']);
    const speaker = await member(server.port, 'speaker', ['g']);
    speaker.send({ op: 'pub', group: 'g', data: 'still fine' });
    assert.equal((await watcher.next((f) => f.op === 'msg')).data, 'still fine');
    watcher.close();
    speaker.close();
  }

  const badFrames: Array<[string, string, RegExp]> = [
    ['malformed JSON', '{"op":"pub",', /not valid JSON/],
    ['a non-object', '[1,2,3]', /must be a JSON object/],
    ['a string', '"hello"', /must be a JSON object/],
    ['no op', '{"group":"g"}', /needs an op/],
    ['an unknown op', '{"op":"explode"}', /unknown op/],
    ['a group of the wrong type', '{"op":"join","group":42}', /group must match/],
    ['a group with forbidden characters', '{"op":"join","group":"a b"}', /group must match/],
    ['a pub without data', '{"op":"pub","group":"g"}', /pub needs data/],
    ['a bad priority', '{"op":"pub","group":"g","data":1,"pri":7}', /pri must be/],
    ['a non-string ref', '{"op":"join","group":"g","ref":5}', /ref must be a well-formed string/],
    ['a ref with half a surrogate pair', '{"op":"join","group":"g","ref":"x\\ud800"}', /ref must be a well-formed string/],
    ['a ping without t', '{"op":"ping"}', /ping needs a number/],
    ['an any with at (only a send is scheduled)', '{"op":"any","group":"g","data":1,"at":4102444800000}', /any has no at/],
  ];
  for (const [name, raw, message] of badFrames) {
    test(`${name} gets E_BAD_FRAME and the connection stays open`, async () => {
      const client = await member(server.port, 'sloppy');
      client.sendRaw(raw);
      const err = await client.next((f) => f.op === 'err');
      assert.equal(err.code, 'E_BAD_FRAME');
      assert.match(String(err.message), message);
      client.send({ op: 'ping', t: 1 });
      await client.next((f) => f.op === 'pong');
      client.close();
    });
  }

  test('the error echoes the ref of the frame that caused it', async () => {
    const client = await member(server.port, 'sloppy');
    client.send({ op: 'pub', group: 'g', data: 1, pri: 9, ref: 'my-ref' });
    const err = await client.next((f) => f.op === 'err');
    assert.equal(err.ref, 'my-ref');
    client.close();
  });

  test('a binary frame on a JSON connection is a bad frame', async () => {
    const client = await member(server.port, 'binary');
    client.sendRaw(Buffer.from([1, 2, 3]));
    const err = await client.next((f) => f.op === 'err');
    assert.equal(err.code, 'E_BAD_FRAME');
    client.close();
  });

  test('repeated bad frames close the connection with 4400', async () => {
    const client = await member(server.port, 'repeat-offender');
    for (let i = 0; i < 3; i++) client.sendRaw('nonsense');
    assert.equal((await client.closed).code, 4400);
    await bystanderStillServed();
  });

  test('a frame over max_payload gets E_TOO_LARGE and close 1009', async () => {
    const client = await member(server.port, 'big');
    client.send({ op: 'pub', group: 'g', data: 'x'.repeat(5000) });
    const err = await client.next((f) => f.op === 'err');
    assert.equal(err.code, 'E_TOO_LARGE');
    assert.equal((await client.closed).code, 1009);
    await bystanderStillServed();
  });

  test('a frame far over max_payload is cut by the transport before it is buffered', async () => {
    const client = await member(server.port, 'huge');
    client.ws.on('error', () => {});
    client.sendRaw('x'.repeat(1024 * 1024));
    assert.equal((await client.closed).code, 1006);
    await bystanderStillServed();
  });

  test('pub to a group not joined gets E_NOT_MEMBER', async () => {
    const client = await member(server.port, 'lurker');
    client.send({ op: 'pub', group: 'not-joined', data: 1, ref: 'r' });
    const err = await client.next((f) => f.op === 'err');
    assert.equal(err.code, 'E_NOT_MEMBER');
    assert.equal(err.ref, 'r');
    client.close();
  });

  test('an unsupported subprotocol is refused before the upgrade', async () => {
    await assert.rejects(connect(server.port, { query: 'user=u', protocols: ['chat.v9'] }), (err: Error & { status?: number }) => err.status === 400);
  });

  test('a client offering ocs.v1.json gets it back', async () => {
    const client = await connect(server.port, { query: 'user=u', protocols: ['ocs.v1.json'] });
    assert.equal(client.ws.protocol, 'ocs.v1.json');
    client.close();
  });

  test('subprotocols offered on two header lines are one list (RFC 6455 11.3.4): the one we speak is picked', async () => {
    const response = await rawUpgrade(server.port, ['Sec-WebSocket-Protocol: chat.v9', 'Sec-WebSocket-Protocol: ocs.v1.msgpack']);
    assert.match(response, /^HTTP\/1\.1 101 /);
    assert.match(response, /\r\nSec-WebSocket-Protocol: ocs\.v1\.msgpack\r\n/i);
  });

  test('a bad anonymous user id is refused with 401', async () => {
    await assert.rejects(connect(server.port, { query: 'user=' + encodeURIComponent('bad user"') }), (err: Error & { status?: number }) => err.status === 401);
  });

  test('/health still reports every shard up after all of the above', async () => {
    const { body } = await getJson(server.port, '/health');
    assert.equal(body.status, 'ok');
  });
});

describe('deeply nested data', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({});
  });
  after(() => server.close());

  test('data nested deeper than 64 levels is E_BAD_FRAME, however small the frame; 63 levels are fine', async () => {
    const client = await member(server.port, 'nester', ['g']);
    const nested = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth);
    // 30,000 levels fit in max_payload; re-encoding them would overflow the stack.
    client.sendRaw(`{"op":"pub","group":"g","data":${nested(30_000)},"ref":"deep"}`);
    const err = await client.next((f) => f.ref === 'deep');
    assert.equal(err.op, 'err');
    assert.equal(err.code, 'E_BAD_FRAME');
    assert.match(String(err.message), /nested deeper than 64/);
    // The frame object is level 1, so data may nest 63 levels.
    client.sendRaw(`{"op":"pub","group":"g","data":${nested(63)},"ref":"ok"}`);
    assert.equal((await client.next((f) => f.ref === 'ok')).op, 'ack');
    client.sendRaw(`{"op":"pub","group":"g","data":${nested(64)},"ref":"one-too-many"}`);
    assert.equal((await client.next((f) => f.ref === 'one-too-many')).code, 'E_BAD_FRAME');
    client.close();
  });
});

describe('rate limit', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { limits: { messages_per_second: 10, burst: 10, rate_violations_before_close: 5 } } });
  });
  after(() => server.close());

  test('a flood gets E_RATE_LIMITED, then close 4029; a calm neighbour is untouched', async () => {
    const flooder = await member(server.port, 'flooder', ['g']);
    const calm = await member(server.port, 'calm', ['g']);
    for (let i = 0; i < 40; i++) flooder.send({ op: 'ping', t: i });
    const errors: Frame[] = [];
    const { code } = await flooder.closed;
    errors.push(...flooder.frames.filter((f) => f.op === 'err'));
    assert.equal(code, 4029);
    assert.ok(errors.length >= 1 && errors.every((e) => e.code === 'E_RATE_LIMITED'));
    // At most the burst got through before the limit bit.
    assert.ok(flooder.frames.filter((f) => f.op === 'pong').length <= 12);
    calm.send({ op: 'ping', t: 1 });
    await calm.next((f) => f.op === 'pong');
    calm.close();
  });

  test("a refusal names the refused frame's ref, so a client can tell which request it was", async () => {
    const flooder = await member(server.port, 'named-flooder', ['g']);
    for (let i = 0; i < 20; i++) flooder.send({ op: 'pub', group: 'g', data: i, ref: `r${i}` });
    await flooder.closed;
    const refused = flooder.frames.filter((f) => f.op === 'err' && f.code === 'E_RATE_LIMITED');
    const acked = flooder.frames.filter((f) => f.op === 'ack').map((f) => f.ref);
    assert.ok(refused.length >= 1);
    assert.deepEqual([...acked, ...refused.map((f) => f.ref)].sort(), Array.from({ length: acked.length + refused.length }, (_, i) => `r${i}`).sort());
  });

  test('WebSocket pings count as frames: a ping flood is closed 4029 too (uWS answers each with a pong, so it once went on for ever), a ping now and then is answered', async () => {
    const pinger = await member(server.port, 'pinger');
    const pongs = (client: TestClient): Promise<void> => new Promise((resolve) => client.ws.once('pong', () => resolve()));
    const answered = pongs(pinger);
    pinger.ws.ping();
    await answered;
    const flooder = await member(server.port, 'ping-flooder');
    for (let i = 0; i < 40; i++) flooder.ws.ping();
    const stillOpen = new Promise<{ code: number }>((resolve) => setTimeout(() => resolve({ code: -1 }), 5000).unref());
    assert.equal((await Promise.race([flooder.closed, stillOpen])).code, 4029, 'closed within 5 s');
    assert.ok(flooder.frames.some((f) => f.op === 'err' && f.code === 'E_RATE_LIMITED'));
    const again = pongs(pinger);
    pinger.ws.ping();
    await again;
    pinger.close();
  });

  test('unsolicited pongs count as frames too: a pong flood is closed 4029', async () => {
    const flooder = await member(server.port, 'pong-flooder');
    for (let i = 0; i < 40; i++) flooder.ws.pong();
    const stillOpen = new Promise<{ code: number }>((resolve) => setTimeout(() => resolve({ code: -1 }), 5000).unref());
    assert.equal((await Promise.race([flooder.closed, stillOpen])).code, 4029, 'closed within 5 s');
  });
});

test('the pongs that answer our pings are free: a client pinged 50 times a second under a limit of 10 frames a second stays open', async () => {
  const server = await startInProcess({
    websocket: {
      server: { ping_interval: 0.02, backpressure_check_interval: 0.02 },
      limits: { messages_per_second: 10, burst: 10, rate_violations_before_close: 5 },
    },
  });
  try {
    const client = await member(server.port, 'answers-pings');
    let pinged = 0;
    client.ws.on('ping', () => pinged++);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.ok(pinged >= 30, `pinged ${pinged} times`);
    client.send({ op: 'ping', t: 1 });
    const pong = await client.next((f) => f.op === 'pong' || f.op === 'err');
    assert.equal(pong.op, 'pong');
    client.close();
  } finally {
    await server.close();
  }
});

describe('connection limits', () => {
  test('over max_connections across all shards the upgrade gets HTTP 503', async () => {
    const server = await startInProcess({ websocket: { server: { max_connections: 3 } } });
    try {
      const held = await Promise.all([1, 2, 3].map((i) => member(server.port, `u${i}`)));
      await assert.rejects(connect(server.port, { query: 'user=u4' }), (err: Error & { status?: number }) => err.status === 503);
      held[0]!.close();
      await held[0]!.closed;
      // The slot is given back once the connection closed (on whichever shard held it).
      let admitted = false;
      for (let i = 0; i < 50 && !admitted; i++) {
        try {
          (await connect(server.port, { query: 'user=u5' })).close();
          admitted = true;
        } catch {
          await new Promise((r) => setTimeout(r, 20));
        }
      }
      assert.ok(admitted);
      for (const client of held) client.close();
    } finally {
      await server.close();
    }
  });

  test('a connection that sends nothing and answers no ping is closed after idle_timeout, not before', { timeout: 30_000 }, async () => {
    const server = await startInProcess({ websocket: { server: { idle_timeout: 2, ping_interval: 0.5 } } });
    try {
      const live = await connect(server.port, { query: 'user=live' });
      const silent = await connect(server.port, { query: 'user=silent', autoPong: false });
      const opened = Date.now();
      const { code } = await silent.closed;
      assert.equal(code, 4408);
      assert.ok(Date.now() - opened >= 1900, `closed after ${Date.now() - opened} ms`);
      // The live client answered the server's pings and is still connected.
      assert.equal(live.ws.readyState, WebSocket.OPEN);
      live.close();
    } finally {
      await server.close();
    }
  });

  test('a slow consumer over max_backpressure gets E_OVERLOADED and close 1013', { timeout: 30_000 }, async () => {
    const server = await startInProcess({ websocket: { server: { max_backpressure: 1024 * 1024 } } });
    try {
      const slow = await member(server.port, 'slow', ['firehose']);
      const fast = await member(server.port, 'fast', ['firehose']);
      const socket = (slow.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
      socket.pause();
      // Random, so that permessage-deflate (which `ws` negotiates) cannot shrink it.
      const chunk = randomBytes(6 * 1024).toString('base64');
      // About 2 MB/s: enough to fill the kernel's socket buffers and then the server's queue
      // for `slow`, slowly enough that the sweep (every 0.25 s) sees it pass max_backpressure
      // before it passes 4 times that, where uWS cuts it (1006): at 4 MB/s a shard kept from
      // its core for 0.75 s, on a machine running two test files at once, did not.
      for (let i = 0; i < 20_000; i++) {
        fast.send({ op: 'pub', group: 'firehose', data: chunk });
        if (i % 5 !== 0) continue;
        await new Promise((r) => setTimeout(r, 20));
        const { body } = await getJson(server.port, '/stats');
        if ((body.totals as Record<string, number>).slow_consumers_closed! > 0) break;
      }
      socket.resume();
      const { code } = await slow.closed;
      assert.equal(code, 1013);
      assert.ok(slow.frames.some((f) => f.op === 'err' && f.code === 'E_OVERLOADED'));
      fast.close();
    } finally {
      await server.close();
    }
  });
});

/** The head of the answer to a WebSocket upgrade written by hand, with `lines` among its headers. */
function rawUpgrade(port: number, lines: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(port, '127.0.0.1');
    let answer = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      answer += chunk;
      if (!answer.includes('\r\n\r\n')) return;
      socket.destroy();
      resolve(answer.slice(0, answer.indexOf('\r\n\r\n') + 2));
    });
    socket.on('error', reject);
    const key = randomBytes(16).toString('base64');
    socket.write(['GET /ws?user=lines HTTP/1.1', 'Host: localhost', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Key: ${key}`, 'Sec-WebSocket-Version: 13', ...lines, '', ''].join('\r\n'));
  });
}

// Tests for tools/wsclient/client.ts against a real uWebSockets.js server (and, for the byte-level
// cases uWS cannot produce, a hand-written TCP peer). Every wait is on an event, never a clock.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import uWS from 'uWebSockets.js';
import { connectWs, type WsClient, type WsClientOptions } from '../tools/wsclient/client.js';

// ---------------------------------------------------------------------------------------
// The uWS server. Text commands drive its behaviour; anything else is echoed.

let listenSocket: uWS.us_listen_socket | null = null;
let port = 0;
const openSockets = new Set<uWS.WebSocket<unknown>>();

before(async () => {
  const app = uWS.App().ws('/*', {
    maxPayloadLength: 4 * 1024 * 1024,
    maxBackpressure: 16 * 1024 * 1024,
    idleTimeout: 0,
    upgrade: (res, req, context) => {
      if (req.getQuery('deny') === '401') {
        res.writeStatus('401 Unauthorized').end('bad token');
        return;
      }
      res.upgrade(
        {},
        req.getHeader('sec-websocket-key'),
        req.getHeader('sec-websocket-protocol').split(',')[0]?.trim() ?? '',
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },
    open: (ws) => void openSockets.add(ws),
    close: (ws) => void openSockets.delete(ws),
    message: (ws, message, isBinary) => {
      const text = isBinary ? '' : Buffer.from(message).toString();
      if (text.startsWith('burst:')) {
        const count = Number(text.slice(6));
        ws.cork(() => {
          for (let i = 0; i < count; i++) ws.send(`m${i}`);
        });
      } else if (text.startsWith('close:')) {
        const [, code, reason] = text.split(':');
        ws.end(Number(code), reason);
      } else if (text === 'fragments') {
        ws.sendFirstFragment('ab');
        ws.sendFragment('cd');
        ws.sendLastFragment('ef');
      } else if (text.startsWith('server-ping:')) {
        ws.ping(text.slice(12));
      } else {
        ws.send(message, isBinary);
      }
    },
    pong: (ws, message) => {
      ws.send(`pong-received:${Buffer.from(message).toString()}`);
    },
  });
  await new Promise<void>((resolve, reject) => {
    app.listen('127.0.0.1', 0, (ls) => {
      if (!ls) return reject(new Error('uWS could not listen'));
      listenSocket = ls;
      port = uWS.us_socket_local_port(ls);
      resolve();
    });
  });
});

after(() => {
  if (listenSocket) uWS.us_listen_socket_close(listenSocket);
  for (const ws of openSockets) ws.close();
});

// ---------------------------------------------------------------------------------------
// A client whose events are promises and arrays.

interface Probe {
  client: WsClient;
  opened: Promise<void>;
  closed: Promise<{ code: number; reason: string }>;
  messages: { payload: Buffer; isBinary: boolean }[];
  pongs: Buffer[];
  errors: Error[];
  /** Resolves once at least `count` messages have arrived. */
  waitForMessages(count: number): Promise<void>;
  waitForPongs(count: number): Promise<void>;
}

function probe(path: string, extra: Partial<WsClientOptions> = {}, targetPort = port): Probe {
  const messages: Probe['messages'] = [];
  const pongs: Buffer[] = [];
  const errors: Error[] = [];
  const waiters: { count: number; list: unknown[]; resolve: () => void }[] = [];
  const wake = (): void => {
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i]!;
      if (w.list.length >= w.count) {
        waiters.splice(i, 1);
        w.resolve();
      }
    }
  };
  const waitOn = (list: unknown[], count: number) =>
    new Promise<void>((resolve) => {
      waiters.push({ count, list, resolve });
      wake();
    });
  let resolveOpen!: () => void;
  let rejectOpen!: (err: Error) => void;
  let resolveClose!: (value: { code: number; reason: string }) => void;
  const opened = new Promise<void>((res, rej) => ((resolveOpen = res), (rejectOpen = rej)));
  const closed = new Promise<{ code: number; reason: string }>((res) => (resolveClose = res));
  opened.catch(() => {}); // tests that expect a refusal await `closed` instead
  const client = connectWs({
    host: '127.0.0.1',
    port: targetPort,
    path,
    ...extra,
    onOpen: () => resolveOpen(),
    onMessage: (payload, isBinary) => {
      messages.push({ payload: Buffer.from(payload), isBinary });
      wake();
    },
    onPong: (payload) => {
      pongs.push(Buffer.from(payload));
      wake();
    },
    onError: (err) => {
      errors.push(err);
      rejectOpen(err);
    },
    onClose: (code, reason) => {
      rejectOpen(new Error(`closed before open: ${code}`));
      resolveClose({ code, reason });
    },
  });
  return {
    client,
    opened,
    closed,
    messages,
    pongs,
    errors,
    waitForMessages: (count) => waitOn(messages, count),
    waitForPongs: (count) => waitOn(pongs, count),
  };
}

/** Bytes whose every position differs, so an offset or masking bug changes the content. */
function pattern(size: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) out[i] = (i * 31 + (i >>> 8)) & 0xff;
  return out;
}

// ---------------------------------------------------------------------------------------
// Against uWS

const SIZES = [0, 125, 126, 65535, 65536, 1024 * 1024];

test('echoes text and binary messages across the 7-bit, 16-bit and 64-bit length forms', async () => {
  const p = probe('/echo?x=1');
  await p.opened;
  assert.ok(p.client.isOpen);
  assert.ok(p.client.openMs >= 0 && Number.isFinite(p.client.connectedAt));
  for (const size of SIZES) {
    const binary = pattern(size);
    // Text: printable ASCII so the echo is byte-identical.
    const text = 'x'.repeat(size).replace(/x/g, (_, i: number) => String.fromCharCode(32 + (i % 95)));
    p.client.send(text);
    p.client.send(binary);
  }
  await p.waitForMessages(SIZES.length * 2);
  SIZES.forEach((size, i) => {
    const text = p.messages[i * 2]!;
    const binary = p.messages[i * 2 + 1]!;
    assert.equal(text.isBinary, false, `text ${size}`);
    assert.equal(text.payload.length, size, `text ${size}`);
    assert.equal(text.payload[size - 1], size ? 32 + ((size - 1) % 95) : undefined);
    assert.equal(binary.isBinary, true, `binary ${size}`);
    assert.ok(binary.payload.equals(pattern(size)), `binary ${size}`);
  });
  p.client.close();
  assert.equal((await p.closed).code, 1000);
});

test('echoes UTF-8 text', async () => {
  const p = probe('/');
  await p.opened;
  const text = 'héllo wörld ✓ 🚀';
  p.client.send(text);
  await p.waitForMessages(1);
  assert.equal(p.messages[0]!.payload.toString('utf8'), text);
  p.client.close();
  await p.closed;
});

test('a burst of many small messages arrives complete and in order', async () => {
  const p = probe('/');
  await p.opened;
  const count = 20_000;
  p.client.send(`burst:${count}`);
  await p.waitForMessages(count);
  for (let i = 0; i < count; i++) assert.equal(p.messages[i]!.payload.toString(), `m${i}`);
  p.client.close();
  await p.closed;
});

test('sendMany writes many frames that arrive in order', async () => {
  const p = probe('/');
  await p.opened;
  const texts = Array.from({ length: 500 }, (_, i) => `t${i}-${'y'.repeat(i)}`);
  p.client.sendMany(texts);
  await p.waitForMessages(texts.length);
  assert.deepEqual(
    p.messages.map((m) => m.payload.toString()),
    texts,
  );
  p.client.close();
  await p.closed;
});

test('a fragmented message is reassembled', async () => {
  const p = probe('/');
  await p.opened;
  p.client.send('fragments');
  await p.waitForMessages(1);
  assert.equal(p.messages[0]!.payload.toString(), 'abcdef');
  assert.equal(p.messages[0]!.isBinary, false);
  p.client.close();
  await p.closed;
});

test('the server-initiated close code and reason reach onClose', async () => {
  const p = probe('/');
  await p.opened;
  p.client.send('close:4001:token expired');
  assert.deepEqual(await p.closed, { code: 4001, reason: 'token expired' });
  assert.equal(p.client.isOpen, false);
  assert.equal(p.client.send('late'), false);
});

test('a 401 upgrade refusal reaches onError with httpStatus, then onClose(1006)', async () => {
  const p = probe('/ws?deny=401');
  const closed = await p.closed;
  assert.equal(closed.code, 1006);
  assert.equal(p.errors.length, 1);
  const err = p.errors[0] as Error & { httpStatus?: number };
  assert.equal(err.httpStatus, 401);
  assert.match(err.message, /401/);
});

test('ping gets the server pong; a server ping gets an automatic pong', async () => {
  const p = probe('/');
  await p.opened;
  p.client.ping('abc');
  await p.waitForPongs(1);
  assert.equal(p.pongs[0]!.toString(), 'abc');
  p.client.send('server-ping:xyz');
  await p.waitForMessages(1);
  assert.equal(p.messages[0]!.payload.toString(), 'pong-received:xyz');
  p.client.close();
  await p.closed;
});

test('misuse throws: send before open, an oversized ping, a reserved close code', async () => {
  const p = probe('/');
  assert.throws(() => p.client.send('too early'), /not open/);
  await p.opened;
  assert.throws(() => p.client.ping('x'.repeat(126)), RangeError);
  assert.throws(() => p.client.close(1006), RangeError);
  assert.ok(p.client.isOpen);
  p.client.close(4000, 'done');
  assert.equal((await p.closed).code, 4000);
});

test('the negotiated subprotocol is exposed', async () => {
  const p = probe('/', { protocols: ['ocs.v1.json', 'ocs.v1.msgpack'] });
  await p.opened;
  assert.equal(p.client.protocol, 'ocs.v1.json');
  p.client.close();
  await p.closed;
});

test('a refused TCP connection reaches onError and onClose(1006)', async () => {
  // A port that was free a moment ago: bind, read the port, close.
  const free = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const freePort = (s.address() as { port: number }).port;
      s.close(() => resolve(freePort));
    });
  });
  const p = probe('/', {}, free);
  assert.equal((await p.closed).code, 1006);
  assert.match(p.errors[0]!.message, /ECONNREFUSED/);
});

// ---------------------------------------------------------------------------------------
// Against a hand-written peer: byte-level cases a real server does not produce on demand.

/** A TCP server that completes the handshake and then writes `frames` one byte per write. */
async function rawPeer(frames: Buffer, then: (socket: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    let head = '';
    socket.on('data', function onHead(chunk) {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onHead);
      socket.on('data', () => {}); // ignore the client's frames
      const key = /sec-websocket-key: *(\S+)/i.exec(head)![1]!;
      const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
      );
      for (let i = 0; i < frames.length; i++) socket.write(frames.subarray(i, i + 1));
      then(socket);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as { port: number }).port };
}

function serverFrame(fin: boolean, opcode: number, payload: Buffer): Buffer {
  const length = payload.length;
  const header =
    length < 126
      ? Buffer.from([(fin ? 0x80 : 0) | opcode, length])
      : length < 65536
        ? Buffer.from([(fin ? 0x80 : 0) | opcode, 126, length >> 8, length & 0xff])
        : Buffer.concat([Buffer.from([(fin ? 0x80 : 0) | opcode, 127, 0, 0, 0, 0]), u32(length)]);
  return Buffer.concat([header, payload]);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

test('frames split byte by byte, fragments with a ping between them, and a close without code', async () => {
  const big = pattern(70_000);
  const frames = Buffer.concat([
    serverFrame(true, 0x1, Buffer.from('one')),
    serverFrame(false, 0x2, big.subarray(0, 100)),
    serverFrame(true, 0x9, Buffer.from('mid-ping')),
    serverFrame(false, 0x0, big.subarray(100, 300)),
    serverFrame(true, 0x0, big.subarray(300)),
    serverFrame(true, 0x2, big), // 64-bit length form
    serverFrame(true, 0x1, Buffer.alloc(0)),
    serverFrame(true, 0x8, Buffer.alloc(0)), // close without a status code
  ]);
  const { server, port: rawPort } = await rawPeer(frames, () => {});
  const p = probe('/', {}, rawPort);
  const closed = await p.closed;
  server.close();
  assert.deepEqual(closed, { code: 1005, reason: '' });
  assert.equal(p.messages.length, 4);
  assert.equal(p.messages[0]!.payload.toString(), 'one');
  assert.ok(p.messages[1]!.payload.equals(big));
  assert.equal(p.messages[1]!.isBinary, true);
  assert.ok(p.messages[2]!.payload.equals(big));
  assert.equal(p.messages[3]!.payload.length, 0);
});

test('a TCP drop without a close frame is reported as 1006', async () => {
  const { server, port: rawPort } = await rawPeer(serverFrame(true, 0x1, Buffer.from('bye')), (socket) =>
    socket.destroy(),
  );
  const p = probe('/', {}, rawPort);
  assert.equal((await p.closed).code, 1006);
  server.close();
});

test('a masked server frame is a protocol error (1002)', async () => {
  const masked = Buffer.from([0x81, 0x80 | 2, 1, 2, 3, 4, 0x61 ^ 1, 0x62 ^ 2]);
  const { server, port: rawPort } = await rawPeer(masked, () => {});
  const p = probe('/', {}, rawPort);
  const closed = await p.closed;
  server.close();
  assert.equal(closed.code, 1002);
  assert.match(p.errors[0]!.message, /masked/);
  assert.equal(p.messages.length, 0);
});

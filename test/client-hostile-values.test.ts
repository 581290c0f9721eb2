/**
 * A hostile server's frames that are small on the wire and huge in the heap: permessage-deflate
 * (which every client offers: `ws` by default, browsers always) turns 24 KB into 24 MB of
 * `{},{},…`, and JSON.parse (or the MessagePack decoder) makes each pair of braces an object of
 * about 64 bytes; LZ4 does the same to a msgpack frame. The SDK refuses such a frame (E_BAD_FRAME on `error`) before building it,
 * whatever its encoding; the connection goes on.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import v8 from 'node:v8';
import vm from 'node:vm';
import { compressSync } from 'lz4-napi';
import WebSocket, { WebSocketServer } from 'ws';
import { checkJsonCost } from '../src/client/heap-cost.js';
import { MAX_FRAME_HEAP_BYTES, OcsClient, OcsError } from '../src/client/index.js';
import { MSGPACK_PROTOCOL, packValue, writeFrame } from '../src/protocol/msgpack-codec.js';
import { until } from './helpers/messaging.js';
import { sdkClient } from './helpers/sdk.js';

/** 8 M empty objects: 24 MB of JSON text, about 500 MB of heap once parsed. */
const COUNT = 8_000_000;
const MB = 1024 * 1024;

const msg = (id: string): Record<string, unknown> => ({ op: 'msg', id, from: 'x', data: id, pri: 1, ts: 1 });

/**
 * A server that sends each connection `welcome`, `bomb` (with permessage-deflate when `deflate`)
 * and a good message; a client that must drop the bomb with an E_BAD_FRAME saying `why`, get the
 * good message and stay open, its heap growing little. Tells what the wire and heap saw.
 */
async function refused(t: TestContext, encoding: 'json' | 'msgpack', frames: { welcome: string | Uint8Array; bomb: string | Uint8Array; good: string | Uint8Array }, deflate: boolean, why: RegExp): Promise<void> {
  const protocol = encoding === 'json' ? 'ocs.v1.json' : MSGPACK_PROTOCOL;
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: deflate ? { threshold: 0 } : false, handleProtocols: () => protocol });
  await new Promise((resolve) => wss.once('listening', resolve));
  let wire = 0;
  wss.on('connection', (ws) => {
    const tcp = (ws as unknown as { _socket: { bytesWritten: number } })._socket;
    ws.send(frames.welcome);
    ws.send(frames.bomb, { compress: deflate }, () => void (wire = tcp.bytesWritten));
    ws.send(frames.good);
  });
  const rx = sdkClient((wss.address() as { port: number }).port, { user: 'u', reconnect: false, heartbeatMs: 0, encoding });
  global.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  let heapPeak = heapBefore;
  const sample = (): void => void (heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed));
  rx.client.on('message', sample);
  rx.client.on('error', sample);
  try {
    await rx.client.connect();
    assert.equal(rx.client.encoding, encoding);
    await rx.received(1, (m) => m.id === 'good', 30_000);
    const grown = heapPeak - heapBefore;
    assert.ok(grown < 128 * MB, `heap grew ${(grown / MB).toFixed(0)} MB`);
    assert.deepEqual(rx.messages.map((m) => m.id), ['good']);
    assert.ok(rx.errors.some((e) => e instanceof OcsError && e.code === 'E_BAD_FRAME' && why.test(e.message)), String(rx.errors));
    assert.equal(rx.client.state, 'open');
    const size = frames.bomb.length;
    if (deflate) assert.ok(wire < size / 100, `${wire} bytes on the wire for ${size}`);
    t.diagnostic(`${wire} bytes on the wire for ${size}, the heap grew ${(grown / MB).toFixed(1)} MB`);
  } finally {
    await rx.client.close();
    await new Promise((resolve) => wss.close(resolve));
  }
}

const jsonWelcome = JSON.stringify({ op: 'welcome', user: 'u', sid: 's', shard: 0, pending: 0 });
/** Copied: writeFrame's buffer is reused. */
const msgpackWelcome = Uint8Array.from(writeFrame({ op: 'welcome', user: 'u', sid: 's', shard: 0, pending: 0 }));

/** A msgpack `msg` body whose data, its last field, is an array of `count` empty maps (packValue's buffer is reused: copied). */
function mapsBody(count: number): Uint8Array {
  const envelope = Uint8Array.from(packValue({ op: 'msg', id: 'bomb', from: 'x', pri: 1, ts: 1, data: [] }));
  assert.equal(envelope.at(-1), 0x90);
  const body = new Uint8Array(envelope.length + 4 + count).fill(0x80);
  body.set(envelope);
  body.set([0xdd, count >>> 24, (count >>> 16) & 0xff, (count >>> 8) & 0xff, count & 0xff], envelope.length - 1);
  return body;
}

test('a JSON frame that permessage-deflate inflates to 8 M empty objects is dropped as undecodable, costing the heap little; the connection goes on', async (t) => {
  const bomb = JSON.stringify(msg('bomb')).replace('"data":"bomb"', `"data":[${'{},'.repeat(COUNT - 1)}{}]`);
  await refused(t, 'json', { welcome: jsonWelcome, bomb, good: JSON.stringify(msg('good')) }, true, /holds more values than maxFrameHeapBytes/);
});

test('a msgpack frame that permessage-deflate (not LZ4) inflates to 8 M empty maps is dropped as undecodable, costing the heap little', async (t) => {
  const bomb = Buffer.concat([Buffer.from([0]), mapsBody(COUNT)]); // flags 0: no LZ4
  await refused(t, 'msgpack', { welcome: msgpackWelcome, bomb, good: Uint8Array.from(writeFrame(msg('good'))) }, true, /more values than a frame of its size may carry, or maxFrameHeapBytes allows/);
});

test('a msgpack frame of 15 KB of LZ4 inflating to 3.8 M empty maps is dropped as undecodable, costing the heap little; the connection goes on', async (t) => {
  const bomb = Buffer.concat([Buffer.from([1]), compressSync(Buffer.from(mapsBody(3_800_000)))]);
  assert.ok(bomb.length < 16_000, `${bomb.length} bytes`);
  await refused(t, 'msgpack', { welcome: msgpackWelcome, bomb, good: Uint8Array.from(writeFrame(msg('good'))) }, false, /more values than a frame of its size may carry/);
});

test('the JSON scan counts structure outside strings only, lets dense numbers through and refuses dense containers; short text is not scanned', () => {
  const budget = MAX_FRAME_HEAP_BYTES;
  const over = 2 * MB + 10; // just past what the default budget scans
  // Braces inside strings (escaped quotes and backslashes too) are text, not values.
  const inStrings = JSON.stringify({ op: 'msg', id: 'a', data: ['{},[],'.repeat(over / 6), '\\', '"{}"'.repeat(1000), 'x'] });
  assert.ok(inStrings.length > over);
  checkJsonCost(inStrings, budget);
  // 1.5 M small numbers: 24 MB counted.
  checkJsonCost(`[${'1,'.repeat(1_500_000)}1]`, budget);
  // 2.5 M short strings, 32 bytes of heap each as measured (of four characters): 80 MB counted, refused (a string's header counts, not only its slot).
  assert.throws(() => checkJsonCost(`[${'"ab",'.repeat(2_500_000)}"ab"]`, budget), RangeError);
  // Keys are not values: 400,000 objects of one key and one number, 44.8 MB counted.
  checkJsonCost(`[${'{"a":1},'.repeat(400_000)}{"a":1}]`, budget);
  // 1 M empty objects: 80 MB counted, refused.
  assert.throws(() => checkJsonCost(`[${'{},'.repeat(1_000_000)}{}]`, budget), /holds more values than maxFrameHeapBytes \(67108864\) allows/);
  // The same structure after a string that ends in an escaped backslash is counted.
  assert.throws(() => checkJsonCost(`["\\\\",${'[],'.repeat(1_000_000)}[]]`, budget), RangeError);
  // Short text is not scanned whatever it holds: 2 Mi characters of `[[[…]]]` at most count 64 MiB.
  checkJsonCost(`[${'{},'.repeat(100_000)}{}]`, budget);
  checkJsonCost('['.repeat(MB) + ']'.repeat(MB), budget);
  assert.throws(() => checkJsonCost(`[${'{},'.repeat(100_000)}{}]`, 1024 * 1024), RangeError, 'a smaller budget scans shorter text');
});

test('a message whose id is longer than any the server can take an ack of is no message: the dedupe windows keep no megabyte ids', async () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const count = 300;
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: { threshold: 0 } });
  await new Promise((resolve) => wss.once('listening', resolve));
  wss.on('connection', (ws) => {
    ws.send(jsonWelcome);
    // 1 MB ids, about 1 KB each with permessage-deflate.
    for (let i = 0; i < count; i++) ws.send(JSON.stringify({ ...msg('x'), id: `${i}`.padEnd(MB, '.'), ackReq: i % 2 === 0 }), { compress: true });
    ws.send(JSON.stringify(msg('good')));
  });
  // No recording helper: the application here keeps nothing it is handed.
  const client = new OcsClient({ url: `ws://127.0.0.1:${(wss.address() as { port: number }).port}/ws`, WebSocket, user: 'u', reconnect: false, heartbeatMs: 0 });
  const handed: string[] = [];
  client.on('message', (m) => void handed.push(m.id.slice(0, 8)));
  try {
    gc();
    const heapBefore = process.memoryUsage().heapUsed;
    await client.connect();
    await until(() => (handed.includes('good') ? true : undefined), 'the good message', 30_000);
    gc();
    const kept = process.memoryUsage().heapUsed - heapBefore;
    assert.ok(kept < 32 * MB, `${(kept / MB).toFixed(0)} MB kept after ${count} messages of 1 MB ids`);
    assert.deepEqual(handed, ['good']);
  } finally {
    await client.close();
    await new Promise((resolve) => wss.close(resolve));
  }
});

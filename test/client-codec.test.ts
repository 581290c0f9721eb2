/**
 * The client's own MessagePack and LZ4 encoder (plain JavaScript, for browsers) against what
 * the server uses (msgpackr, lz4-napi), both directions, on generated values; and the
 * ocs.v1.msgpack framing as the client uses it (src/protocol/wire.ts and lz4-block.ts, whose
 * own tests are test/msgpack-codec.test.ts), including frames a hostile server could send.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { compressSync, uncompressSync } from 'lz4-napi';
import { Packr } from 'msgpackr';
import { compressBlock, deflateJs } from '../src/client/lz4.js';
import { decodeFrame, encodeFrame, MAX_DECOMPRESSED } from '../src/client/msgpack-codec.js';
import { decode, encode } from '../src/client/msgpack.js';
import { MAX_DEPTH } from '../src/protocol/frames.js';
import { inflateJs } from '../src/protocol/lz4-block.js';
import { scanMsgpack } from '../src/protocol/msgpack-scan.js';

// Plain MessagePack maps and arrays, as a server sends frames (no msgpackr records extension).
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/** What JSON can carry: the values a frame's data holds. */
const jsonValue = fc.jsonValue({ maxDepth: 6 }).map((v) => JSON.parse(JSON.stringify(v)) as unknown);

test('msgpack: what msgpackr packs, the client decodes to the same value', () => {
  fc.assert(fc.property(jsonValue, (value) => assert.deepEqual(decode(packr.pack(value)), value)), { numRuns: 500 });
});

test('msgpack: what the client encodes, msgpackr unpacks to the same value', () => {
  // (msgpackr renames a key __proto__ on the way in: a choice of its own, tested apart below.)
  const withoutProto = jsonValue.filter((value) => !JSON.stringify(value).includes('"__proto__"'));
  fc.assert(fc.property(withoutProto, (value) => assert.deepEqual(packr.unpack(encode(value)), value)), { numRuns: 500 });
});

test('msgpack: every integer width and string length boundary round-trips through msgpackr', () => {
  const values = [0, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, 0.5, -1e300];
  for (const n of values) {
    assert.equal(decode(packr.pack(n)), n, `msgpackr → client ${n}`);
    assert.equal(packr.unpack(encode(n)), n, `client → msgpackr ${n}`);
  }
  for (const length of [0, 31, 32, 255, 256, 65535, 65536]) {
    const s = 'é'.repeat(length);
    assert.equal(decode(packr.pack(s)), s);
    assert.equal(packr.unpack(encode(s)), s);
  }
});

test('msgpack: __proto__ is an own key, as JSON.parse makes it, and no prototype changes', () => {
  const decoded = decode(packr.pack(JSON.parse('{"__proto__":{"admin":true},"a":1}'))) as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(decoded), Object.prototype);
  assert.deepEqual(Object.keys(decoded), ['__proto__', 'a']);
  assert.equal((decoded as { admin?: unknown }).admin, undefined);
});

test('msgpack: hostile bytes are refused, never trusted: truncated, lying lengths, extension types, deep nesting', () => {
  const refuse = (bytes: number[] | Uint8Array, why: string): void => assert.throws(() => decode(Uint8Array.from(bytes)), RangeError, why);
  refuse([0xdd, 0xff, 0xff, 0xff, 0xff], 'an array claiming 4 billion items in 5 bytes');
  refuse([0xdf, 0x7f, 0xff, 0xff, 0xff], 'a map claiming 2 billion entries');
  refuse([0xdb, 0x00, 0x10, 0x00, 0x00, 0x61], 'a string longer than what is left');
  refuse([0xc4, 0x01, 0x00], 'bin, which the protocol refuses');
  assert.throws(() => encode({ data: new Uint8Array(2) }), TypeError, 'bin is not encoded either');
  refuse([0xd4, 0x01, 0x00], 'an extension type');
  refuse([0xc1], 'the never-used byte');
  refuse([0x91], 'an array missing its item');
  refuse([0x01, 0x02], 'bytes after the value');
  refuse(new Uint8Array(100).fill(0x91), 'nesting deeper than 64');
  // Depth as the server counts it (msgpack-scan.ts): what the server sends, the client reads.
  const wrap = (levels: number, inner: unknown): unknown => (levels === 0 ? inner : { d: wrap(levels - 1, inner) });
  /** `levels` containers: maps around an empty array. */
  const nested = (levels: number): Uint8Array => packr.pack(wrap(levels - 1, []));
  for (const levels of [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1]) {
    const passes = scanMsgpack(nested(levels), MAX_DEPTH) === null;
    assert.equal(passes, levels <= MAX_DEPTH, `the server's scan at ${levels} levels`);
    if (passes) assert.ok(decode(nested(levels), MAX_DEPTH), `${levels} levels decode`);
    else refuse(nested(levels), `${levels} levels do not`);
  }
  assert.throws(() => decode(Uint8Array.from([0xa2, 0xff, 0xfe])), TypeError, 'invalid UTF-8');
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      try {
        decode(bytes);
      } catch (err) {
        assert.ok(err instanceof RangeError || err instanceof TypeError, String(err));
      }
    }),
    { numRuns: 2000 },
  );
});

const bytesToCompress = fc.oneof(
  fc.uint8Array({ maxLength: 5000 }),
  // Repetitive data, where matches (and overlapping matches) happen.
  fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.integer({ min: 1, max: 400 })).map(([unit, times]) => {
    const out = new Uint8Array(unit.length * times);
    for (let i = 0; i < times; i++) out.set(unit, i * unit.length);
    return out;
  }),
);

test('lz4: what the client compresses, lz4-napi and src/protocol/lz4-block.ts decompress to the same bytes', () => {
  fc.assert(
    fc.property(bytesToCompress, (bytes) => {
      const prefixed = deflateJs(bytes);
      assert.deepEqual(new Uint8Array(uncompressSync(Buffer.from(prefixed))), bytes);
      assert.deepEqual(inflateJs(prefixed, bytes.length), bytes);
    }),
    { numRuns: 300 },
  );
});

test('lz4: a 100 KB chat transcript shrinks', () => {
  const text = new TextEncoder().encode(JSON.stringify(Array.from({ length: 1000 }, (_, i) => ({ from: `user${i % 7}`, text: 'hello there, how are you' }))));
  const block = compressBlock(text);
  assert.ok(block.length < text.length / 4, `${block.length} of ${text.length}`);
});

test('ocs.v1.msgpack framing: flags byte, LZ4 over the threshold, as the server writes it', () => {
  const small = { op: 'pub', group: 'g', data: { text: 'hi' } };
  const plain = encodeFrame(small);
  assert.equal(plain[0], 0);
  assert.deepEqual(packr.unpack(plain.subarray(1)), small);
  const large = { op: 'pub', group: 'g', data: { text: 'chat '.repeat(1000) } };
  const compressed = encodeFrame(large);
  assert.equal(compressed[0], 1);
  assert.deepEqual(packr.unpack(uncompressSync(Buffer.from(compressed.subarray(1)))), large);
  // And what a server would send: flags 1, lz4-napi's length-prefixed block of a msgpackr frame.
  const fromServer = Buffer.concat([Buffer.from([1]), compressSync(packr.pack(large))]);
  assert.deepEqual(decodeFrame(fromServer.buffer.slice(fromServer.byteOffset, fromServer.byteOffset + fromServer.length)), large);
});

test('ocs.v1.msgpack framing: a declared length over the limit is refused before anything is allocated; reserved flags and text are refused', () => {
  const claim = new Uint8Array(6);
  claim[0] = 1;
  new DataView(claim.buffer).setUint32(1, MAX_DECOMPRESSED + 1, true);
  assert.throws(() => decodeFrame(claim.buffer), /over/);
  assert.throws(() => decodeFrame(Uint8Array.from([2, 0x80]).buffer), /reserved/);
  assert.throws(() => decodeFrame('{"op":"msg"}'), TypeError);
});

test('ocs.v1.msgpack framing: a compressed frame may inflate to the connection\'s maxFrameBytes, as a plain one may be that large', () => {
  // A server frame whose body is past 64 MiB (a max_payload message plus its envelope): the SDK's default maxFrameBytes is 100 MiB.
  const large = { op: 'msg', id: 'm1', from: 'a', data: 'x'.repeat(MAX_DECOMPRESSED + 64), pri: 1, ts: 1 };
  const packed = new Packr({ useRecords: false }).pack(large);
  const frame = Buffer.concat([Buffer.from([1]), compressSync(packed)]);
  const bytes = frame.buffer.slice(frame.byteOffset, frame.byteOffset + frame.length);
  assert.throws(() => decodeFrame(bytes), /over max_payload/, 'without a limit given: the default');
  assert.equal((decodeFrame(bytes, 100 * 1024 * 1024) as { data: string }).data.length, MAX_DECOMPRESSED + 64);
  assert.equal((decodeFrame(bytes, Infinity) as { data: string }).data.length, MAX_DECOMPRESSED + 64);
  assert.throws(() => decodeFrame(bytes, 1024 * 1024), /over max_payload \(1048576\)/);
});

/** `body` as a compressed ocs.v1.msgpack frame, as a (hostile) server may send it. */
const lz4Frame = (body: Uint8Array): ArrayBuffer => {
  const frame = Buffer.concat([Buffer.from([1]), compressSync(Buffer.from(body))]);
  return frame.buffer.slice(frame.byteOffset, frame.byteOffset + frame.length);
};
/** An array head (0xdd) claiming `count` items. */
const arrayHead = (count: number): number[] => [0xdd, count >>> 24, (count >>> 16) & 0xff, (count >>> 8) & 0xff, count & 0xff];

test('ocs.v1.msgpack framing: a frame whose values would cost more than 256 bytes of heap per byte received is refused, before it is built', () => {
  // 15 KB of LZ4 inflating to 3.8 MB of empty maps: 244 MB of heap once decoded.
  const maps = new Uint8Array(5 + 3_800_000).fill(0x80);
  maps.set(arrayHead(maps.length - 5));
  // The same in honest chunks of 15: refused as the values are read, not by a claimed count.
  const chunks = 250_000;
  const chunked = new Uint8Array(5 + chunks * 16).fill(0x80);
  chunked.set(arrayHead(chunks));
  for (let i = 0; i < chunks; i++) chunked[5 + i * 16] = 0x9f;
  // Nested arrays each claiming nearly all that is left, then cut short: each claim was an array allocated up front (1.8 GB at 60 levels of a 15 KB frame).
  const nested = new Uint8Array(1_000_000);
  for (let level = 0; level < 30; level++) nested.set(arrayHead(nested.length - 5 * (level + 1)), 5 * level);
  const frames = { maps: lz4Frame(maps), chunked: lz4Frame(chunked), nested: lz4Frame(nested) };
  const heapBefore = process.memoryUsage().heapUsed;
  for (const [name, frame] of Object.entries(frames)) assert.throws(() => decodeFrame(frame, Infinity), /more values than a frame of its size may carry/, name);
  const grown = process.memoryUsage().heapUsed - heapBefore;
  assert.ok(grown < 32 * 1024 * 1024, `heap grew ${(grown / 1048576).toFixed(0)} MB`);
  // What is not refused: any plain frame (64 bytes per byte at most), and a compressed batch of messages.
  const plain = new Uint8Array(6 + 100_000).fill(0x80);
  plain.set([0, ...arrayHead(100_000)]);
  assert.equal((decodeFrame(plain.buffer, Infinity) as unknown[]).length, 100_000);
  const batch = { op: 'batch', msgs: Array.from({ length: 500 }, (_, i) => ({ op: 'msg', id: `m${i}`, from: `user-${i % 5}`, group: 'room', data: { text: `hello ${i}`, n: [i, 0, 0] }, pri: 1, ts: 1_733_500_000_000 + i, offset: i, epoch: 'e1', ackReq: true })) };
  const frame = lz4Frame(packr.pack(batch));
  assert.deepEqual(decodeFrame(frame), batch);
  assert.ok(frame.byteLength * 4 < packr.pack(batch).length, 'it was compressed well');
});

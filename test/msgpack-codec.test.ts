/**
 * The binary form, without a server: the flags byte and LZ4 framing (wire.ts), the bounded
 * scan (msgpack-scan.ts), the decoder of client frames and the encoders of server frames
 * (msgpack-codec.ts, server-frames.ts), and the plain-TypeScript LZ4 decoder against lz4-napi.
 */
import assert from 'node:assert/strict';
import { isUtf8 } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import lz4 from 'lz4-napi';
import { deflateLz4, inflateLz4 } from '../src/codec/lz4.js';
import { decodeJson, MAX_DEPTH } from '../src/protocol/json-codec.js';
import { inflateBlock, inflateJs } from '../src/protocol/lz4-block.js';
import { decodeMsgpack, readFrame, writeFrame } from '../src/protocol/msgpack-codec.js';
import { scanMsgpack } from '../src/protocol/msgpack-scan.js';
import { JSON_FRAMES, MSGPACK_FRAMES } from '../src/protocol/server-frames.js';
import { decodedBytes, FLAG_LZ4, plainFrame, unwrapFrame, wrapFrame } from '../src/protocol/wire.js';
import { Broadcast, fromRingPayload, ringPayload } from '../src/shard/broadcast.js';

const hex = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text.replace(/\s+/g, ''), 'hex'));
/** A packer that writes what our server's never would (records, bins, dates): the hostile side. */
const anyPackr = new Packr({ useRecords: false });
const body = (value: unknown): Uint8Array => anyPackr.pack(value);

describe('the flags byte and LZ4 framing (wire.ts)', () => {
  const never = (): Uint8Array => assert.fail('inflate must not be called');

  test('flags 0: the rest is the body, as it is', () => {
    assert.deepEqual(unwrapFrame(hex('00 81 a1 61 01'), 100, never), hex('81 a1 61 01'));
  });

  test('every reserved flag bit is refused, alone or with LZ4', () => {
    for (let bit = 1; bit < 8; bit++) {
      for (const lz of [0, FLAG_LZ4]) assert.match(String(unwrapFrame(Uint8Array.of((1 << bit) | lz, 0x80), 100, never)), /reserved flag bits/);
    }
  });

  test('an empty frame, and a compressed one without its 4-byte length, are refused', () => {
    assert.match(String(unwrapFrame(new Uint8Array(0), 100, never)), /no flags byte/);
    assert.match(String(unwrapFrame(hex('01 05 00 00'), 100, never)), /4-byte length/);
  });

  test('an LZ4 bomb (6 bytes claiming 2 GiB) is refused before anything is inflated or allocated', () => {
    assert.match(String(unwrapFrame(hex('01 00 00 00 80 00'), 64 * 1024, never)), /declares 2147483648 bytes, over max_payload \(65536\)/);
    assert.match(String(unwrapFrame(hex('01 ff ff ff ff 00'), 64 * 1024, never)), /declares 4294967295 bytes/);
    assert.match(String(unwrapFrame(hex('01 01 00 01 00 00'), 64 * 1024, never)), /declares 65537 bytes/);
  });

  test('a claim within the limit that its block is too short to inflate to (LZ4 makes at most 255 bytes per byte) is refused before anything is allocated', () => {
    const maxPayload = 64 * 1024 * 1024;
    assert.match(String(unwrapFrame(hex('01 00 00 00 04 00'), maxPayload, never)), /declares 67108864 bytes, more than its 1-byte LZ4 block can inflate to/);
    assert.match(String(unwrapFrame(hex('01 01 02 00 00 00'), maxPayload, never)), /declares 513 bytes, more than its 1-byte/);
    // The most a block can make: 64 MiB of zeros compress to about 263 KB, within the bound.
    const zeros = wrapFrame(new Uint8Array(4 * 1024 * 1024), deflateLz4, 0);
    assert.ok(zeros.byteLength * 256 > 4 * 1024 * 1024);
    assert.equal((unwrapFrame(zeros, maxPayload, inflateLz4) as Uint8Array).byteLength, 4 * 1024 * 1024);
  });

  test('a corrupt block, and one that inflates to less than declared, are refused', () => {
    const good = wrapFrame(body({ op: 'ping', t: 'x'.repeat(200) }), deflateLz4, 0);
    const corrupt = Uint8Array.from(good);
    corrupt[corrupt.length - 8] = 0xff; // a match offset far outside the output
    corrupt[corrupt.length - 7] = 0xff;
    for (const inflate of [inflateLz4, inflateJs]) {
      assert.ok(!(typeof unwrapFrame(good, 1000, inflate) === 'string'));
      const shortBy = Uint8Array.from(good);
      shortBy[1]! += 1; // declares one byte more than the block holds
      assert.match(String(unwrapFrame(shortBy, 1000, inflate)), /corrupt LZ4 block|inflates to/);
      assert.match(String(unwrapFrame(Uint8Array.of(1, 10, 0, 0, 0, 0xf0), 1000, inflate)), /corrupt LZ4 block|inflates to/);
    }
  });

  test('a frame counts by what it inflates to: the declared size when within max_payload and within what its block could make', () => {
    const buffer = (bytes: Uint8Array): ArrayBuffer => new Uint8Array(bytes).buffer; // a copy: msgpackr returns views of its own buffer
    const zeros = writeFrame({ op: 'pub', group: 'g', data: '0'.repeat(60_000) }, deflateLz4, 0);
    assert.ok(zeros.length < 1000, `${zeros.length} bytes on the wire`);
    assert.ok(decodedBytes(buffer(zeros), 65536) > 60_000);
    assert.equal(decodedBytes(buffer(zeros), 50_000), zeros.length, 'over max_payload: refused inline');
    const plain = writeFrame({ op: 'ping', t: 1 });
    assert.equal(decodedBytes(buffer(plain), 65536), plain.length);
    const liar = new Uint8Array([FLAG_LZ4, 0x60, 0xea, 0, 0, 0]); // 6 bytes declaring 60,000
    assert.equal(decodedBytes(buffer(liar), 65536), 6, 'no 1-byte block inflates to 60,000 bytes');
    // Any bytes at all: never throws, never below the frame's length nor above max_payload (unless the frame is).
    fc.assert(
      fc.property(fc.constantFrom(0, FLAG_LZ4, 0xff), fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 1, max: 1 << 20 }), (flags, rest, maxPayload) => {
        const bytes = new Uint8Array([flags, ...rest]);
        const counted = decodedBytes(buffer(bytes), maxPayload);
        assert.ok(counted >= bytes.length && (counted === bytes.length || counted <= maxPayload));
      }),
      { numRuns: 2000 },
    );
  });

  test('a frame is compressed only from the threshold on, and only when that makes it smaller', () => {
    const text = body({ op: 'msg', data: 'chat '.repeat(400) });
    assert.equal(wrapFrame(text, deflateLz4, text.length + 1)[0], 0);
    assert.equal(wrapFrame(text, null, 0)[0], 0);
    const compressed = wrapFrame(text, deflateLz4, text.length);
    assert.equal(compressed[0], FLAG_LZ4);
    assert.ok(compressed.length < text.length / 4);
    const random = randomBytes(2000);
    assert.equal(wrapFrame(random, deflateLz4, 0)[0], 0, 'incompressible bytes go plain');
    assert.ok(Buffer.from(plainFrame(text).subarray(1)).equals(text));
  });
});

describe('the plain-TypeScript LZ4 decoder (lz4-block.ts)', () => {
  test('inflates whatever lz4-napi compresses, byte for byte', () => {
    const chatty = fc.array(fc.constantFrom('the ', 'deploy ', 'failed ', 'ok ', '🙂', 'xyz', '\n'), { maxLength: 800 }).map((words) => Buffer.from(words.join('')));
    fc.assert(
      fc.property(fc.oneof(chatty, fc.uint8Array({ maxLength: 3000 }).map((b) => Buffer.from(b))), (input) => {
        const prefixed = lz4.compressSync(input);
        assert.deepEqual(Buffer.from(inflateJs(prefixed, input.length)), input);
      }),
      { numRuns: 300 },
    );
  });

  test('hostile blocks throw a RangeError and never write past the declared size', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 0, max: 256 }), (block, size) => {
        try {
          assert.equal(inflateBlock(block, size).length, size);
        } catch (err) {
          assert.ok(err instanceof RangeError, String(err));
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('the bounded scan before decoding (msgpack-scan.ts)', () => {
  test('a frame map with every JSON kind of value passes', () => {
    assert.equal(scanMsgpack(body({ op: 'pub', group: 'g', data: { a: [1, -1, 1.5, 2 ** 40, -(2 ** 40), null, true, false, 'é', ''], b: {} } }), MAX_DEPTH), null);
  });

  test('strings of every UTF-8 length pass, U+FFFD itself among them', () => {
    assert.equal(scanMsgpack(body({ a: 'aé€😀\u{10FFFF}\uFFFD\uD7FF\uE000', ['é€😀']: 'x'.repeat(300) + '😀' }), MAX_DEPTH), null);
  });

  test('UTF-8 is judged as Node judges it, over 200,000 random strings near the edges', () => {
    // Bytes drawn mostly from lead and continuation ranges, where validators go wrong.
    const pool = [0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xff];
    let seed = 7;
    const next = (n: number): number => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    let valid = 0;
    for (let i = 0; i < 200_000; i++) {
      // Half of them behind 30 ASCII bytes: long strings are judged by another path.
      const prefix = i % 2 === 0 ? [] : Array.from({ length: 30 }, () => 0x61);
      const bytes = Uint8Array.from([...prefix, ...Array.from({ length: 1 + next(6) }, () => pool[next(pool.length)]!)]);
      const frame = new Uint8Array([0x81, 0xa1, 0x61, 0xd9, bytes.length, ...bytes]);
      const expected = isUtf8(bytes);
      if (expected) valid++;
      assert.equal(scanMsgpack(frame, MAX_DEPTH) === null, expected, Buffer.from(bytes).toString('hex'));
    }
    assert.ok(valid > 1000, `${valid} valid ones among them`);
  });

  const refusals: Array<[string, Uint8Array, RegExp]> = [
    ['an array at the top', body([1, 2]), /must be a MessagePack map/],
    ['a string at the top', body('op'), /must be a MessagePack map/],
    ['an integer at the top', body(7), /must be a MessagePack map/],
    ['nil at the top', hex('c0'), /must be a MessagePack map/],
    ['nothing', new Uint8Array(0), /empty/],
    ['bytes after the value', hex('80 80'), /bytes after/],
    ['a bin value', hex('81 a1 61 c4 01 00'), /bin has no JSON form/],
    ['an ext value', hex('81 a1 61 c7 01 05 00'), /extension types/],
    ['a fixext (timestamp)', body({ at: new Date(0) }), /extension types/],
    ['a msgpackr record', new Packr({ useRecords: true }).pack({ op: 'ping', t: 1 }), /extension types|must be a MessagePack map/],
    ['the never-used byte 0xc1', hex('81 a1 61 c1'), /0xc1/],
    ['NaN', hex('81 a1 61 cb 7f f8 00 00 00 00 00 00'), /NaN and infinities/],
    ['an infinity as float32', hex('81 a1 61 ca 7f 80 00 00'), /NaN and infinities/],
    ['an integer key', hex('81 01 02'), /keys must be strings/],
    ['a map key that is a map', hex('81 80 01'), /keys must be strings/],
    ['an array32 claiming 4 billion items in 6 bytes', hex('81 a1 61 dd ff ff ff ff'), /cut short/],
    ['a map32 claiming 4 billion entries', hex('df ff ff ff ff'), /cut short/],
    ['a str32 claiming 4 GiB', hex('81 a1 61 db ff ff ff ff 61'), /cut short/],
    ['a string with a lone continuation byte', hex('81 a1 61 a1 80'), /not valid UTF-8/],
    ['a string cut inside a character', hex('81 a1 61 a2 e2 82'), /not valid UTF-8/],
    ['an overlong NUL (C0 80)', hex('81 a1 61 a2 c0 80'), /not valid UTF-8/],
    ['an overlong three-byte form (E0 80 AF)', hex('81 a1 61 a3 e0 80 af'), /not valid UTF-8/],
    ['a UTF-16 surrogate written as UTF-8 (ED A0 80)', hex('81 a1 61 a3 ed a0 80'), /not valid UTF-8/],
    ['past U+10FFFF (F4 90 80 80)', hex('81 a1 61 a4 f4 90 80 80'), /not valid UTF-8/],
    ['a lead byte F5', hex('81 a1 61 a1 f5'), /not valid UTF-8/],
    ['a key of invalid UTF-8', hex('81 a1 ff 01'), /not valid UTF-8/],
    ['a str8 of invalid UTF-8', hex('81 a1 61 d9 01 ff'), /not valid UTF-8/],
  ];
  for (const [name, bytes, message] of refusals) {
    test(`refused: ${name}`, () => assert.match(String(scanMsgpack(bytes, MAX_DEPTH)), message));
  }

  test('every truncation of a valid frame is refused, none throws', () => {
    const frame = body({ op: 'pub', group: 'general', data: { text: 'x'.repeat(300), n: [1.5, 70000, -3], deep: { a: { b: 'c' } } }, ref: 'r' });
    for (let cut = 0; cut < frame.length; cut++) assert.notEqual(scanMsgpack(frame.subarray(0, cut), MAX_DEPTH), null, `cut at ${cut}`);
  });

  test('nesting counts as in JSON: the frame map is level 1, 64 levels pass and 65 do not, an empty container counts', () => {
    const nest = (levels: number, inner: unknown): unknown => (levels === 0 ? inner : { d: nest(levels - 1, inner) });
    for (const [levels, inner, passes] of [[MAX_DEPTH - 1, 1, true], [MAX_DEPTH - 1, [], true], [MAX_DEPTH, 1, true], [MAX_DEPTH, [], false], [MAX_DEPTH + 1, 1, false]] as const) {
      const value = nest(levels, inner);
      const verdict = scanMsgpack(body(value), MAX_DEPTH);
      assert.equal(verdict === null, passes, `${levels} maps around ${JSON.stringify(inner)}: ${verdict}`);
      const json = decodeJson(Buffer.from(JSON.stringify(value)), false) as { message?: string };
      assert.equal(/nested deeper/.test(json.message ?? ''), !passes, 'the JSON decoder agrees');
    }
  });

  test('a million nested arrays cost one pass, not the stack', () => {
    const deep = new Uint8Array(1 + 3 + 1_000_000).fill(0x91);
    deep.set(hex('81 a1 61'), 0);
    deep[deep.length - 1] = 0x01;
    assert.match(String(scanMsgpack(deep, MAX_DEPTH)), /nested deeper/);
  });
});

describe('client frames on an ocs.v1.msgpack connection (decodeMsgpack)', () => {
  const decode = (frame: Uint8Array, isBinary = true) => decodeMsgpack(frame, isBinary, 64 * 1024, inflateLz4);

  test('decodes to the same frame as its JSON form, compressed or not', () => {
    const value = { op: 'send', to: 'bob', data: { text: 'hi there '.repeat(50) }, pri: 2, ref: 'r1', at: 1_800_000_000_000 };
    const expected = { op: 'send', to: 'bob', data: value.data, pri: 2, ref: 'r1', at: value.at };
    assert.deepEqual(decode(writeFrame(value)), expected);
    assert.deepEqual(decode(writeFrame(value, deflateLz4, 0)), expected);
  });

  test('a text frame is refused: this encoding is binary only', () => {
    assert.match(String((decode(writeFrame({ op: 'ping', t: 1 }), false) as { message: string }).message), /text frames need the ocs.v1.json protocol/);
  });

  test('valid MessagePack that is not a valid ocs.v1 frame gets the JSON decoder’s refusals', () => {
    const bad: Array<[unknown, RegExp]> = [
      [{ group: 'g' }, /needs an op/],
      [{ op: 'explode' }, /unknown op/],
      [{ op: 'join', group: 42 }, /group must match/],
      [{ op: 'pub', group: 'g' }, /pub needs data/],
      [{ op: 'pub', group: 'g', data: 1, pri: 7 }, /pri must be/],
      [{ op: 'ping' }, /ping needs a number/],
    ];
    for (const [value, message] of bad) {
      const result = decode(writeFrame(value));
      assert.equal(result.op, 'err');
      assert.match((result as { message: string }).message, message);
    }
  });

  test('a __proto__ key reaches no prototype, and 64-bit integers arrive as numbers', () => {
    const before = Object.getOwnPropertyNames(Object.prototype).sort();
    const frame = plainFrame(hex('83 a2 6f 70 a3 70 75 62 a5 67 72 6f 75 70 a1 67 a4 64 61 74 61 82 a9 5f 5f 70 72 6f 74 6f 5f 5f 81 a1 78 01 a1 6e cf 00 20 00 00 00 00 00 01'));
    const result = decode(frame) as { op: string; data: Record<string, unknown> };
    assert.equal(result.op, 'pub');
    assert.equal(Object.getPrototypeOf(result.data), Object.prototype);
    assert.deepEqual(Object.keys(result.data), ['__proto_', 'n']);
    assert.equal(typeof result.data.n, 'number');
    assert.equal(JSON.stringify(result.data), '{"__proto_":{"x":1},"n":9007199254740992}');
    assert.deepEqual(Object.getOwnPropertyNames(Object.prototype).sort(), before);
  });
});

describe('server replies in both encodings (server-frames.ts)', () => {
  test('each msgpack reply decodes to the object its JSON twin parses to, and is never compressed', () => {
    const pairs: Array<[string, (f: typeof JSON_FRAMES) => string | Uint8Array]> = [
      ['welcome', (f) => f.welcome('alice', 's1', 0, 3, Infinity, { messagesPerSecond: 100, burst: 200, ackIds: 128 })],
      ['welcome with expiry', (f) => f.welcome('alice', 's1', 1, 0, 1_800_000_000_000, { messagesPerSecond: 0, burst: 1, ackIds: 128 })],
      ['auth ack', (f) => f.authAck('r', 1_800_000_000_000)],
      ['auth ack without ref or expiry', (f) => f.authAck(undefined, Infinity)],
      ['joined', (f) => f.joined('g', 'r')],
      ['left', (f) => f.left('g', undefined)],
      ['ack', (f) => f.ack(undefined, 'id1')],
      ['pong', (f) => f.pong(1.5, 1_800_000_000_000)],
      ['err', (f) => f.error('E_BAD_FRAME', 'no "quotes" \u2028 spared', 'r', 'unknown_op')],
    ];
    for (const [name, make] of pairs) {
      const binary = make(MSGPACK_FRAMES) as Uint8Array;
      assert.equal(binary[0], 0, name);
      assert.deepEqual(readFrame(binary, 1 << 20, inflateLz4), JSON.parse(make(JSON_FRAMES) as string), name);
    }
  });
});

describe('a broadcast: each encoding made once, lazily; across shards as bytes (broadcast.ts)', () => {
  const codec = { deflate: deflateLz4, lz4Threshold: 1024 };
  const data = { text: 'ship it '.repeat(300) };

  test('json() and binary() are each encoded once, and decode to the same message', () => {
    const b = Broadcast.of(codec, 'm1', 'alice', 'g', data, 1, 5);
    assert.equal(b.json(), b.json());
    assert.equal(b.binary(), b.binary());
    assert.deepEqual(readFrame(b.binary(), 1 << 20, inflateLz4), JSON.parse(Buffer.from(b.json()).toString()));
    assert.equal(b.binary()[0], 1, 'compressed: over lz4_threshold');
  });

  test('a ring payload carries the JSON frame alone, byte for byte as before msgpack, or both frames', () => {
    const b = Broadcast.of(codec, 'm1', 'alice', 'g', data, 1, 5);
    assert.equal(ringPayload(b, false), b.json());
    const both = fromRingPayload(codec, ringPayload(b, true));
    assert.deepEqual([...both.json()], [...b.json()]);
    assert.deepEqual([...both.binary()], [...b.binary()]);
  });

  test('a message whose two forms do not fit a ring record together travels in one, JSON when it fits, else binary, and the receiving shard makes the other', () => {
    /** `payload` in shared memory, as a ring holds it. */
    const inRing = (payload: Uint8Array): Uint8Array => {
      const shared = new Uint8Array(new SharedArrayBuffer(payload.byteLength + 8), 4, payload.byteLength);
      shared.set(payload);
      return shared;
    };
    const decoded = (frame: Uint8Array) => readFrame(frame, 1 << 24, inflateLz4);
    // 1 byte each in msgpack, 6 in JSON: the binary frame alone fits.
    const controls = Broadcast.of(codec, 'm1', 'alice', 'g', '\u0001'.repeat(4000), 1, 5);
    assert.ok(controls.json().byteLength > 6 * 4000 && controls.binary().byteLength < 4100);
    const binaryOnly = ringPayload(controls, true, 10_000);
    assert.ok(binaryOnly.byteLength <= 10_000);
    const fromBinary = fromRingPayload(codec, inRing(binaryOnly));
    assert.deepEqual([...fromBinary.binary()], [...controls.binary()]);
    assert.deepEqual(JSON.parse(Buffer.from(fromBinary.json()).toString()), JSON.parse(Buffer.from(controls.json()).toString()));
    // Even where no shard has msgpack members (withBinary false).
    assert.deepEqual([...fromRingPayload(codec, inRing(ringPayload(controls, false, 10_000))).json()], [...controls.json()]);
    // 3 bytes each in JSON, 9 in msgpack: the JSON frame alone fits.
    const floats = Broadcast.of({ deflate: null, lz4Threshold: Infinity }, 'm2', 'alice', 'g', Array.from({ length: 1000 }, () => 1.1), 1, 5);
    assert.ok(floats.binary().byteLength > 2 * floats.json().byteLength);
    const jsonOnly = ringPayload(floats, true, floats.json().byteLength + 100);
    assert.deepEqual([...jsonOnly], [...floats.json()]);
    assert.deepEqual(decoded(fromRingPayload(codec, inRing(jsonOnly)).binary()), decoded(floats.binary()));
  });

  test('a shard that got only the JSON frame (in shared memory, as a ring holds it) makes the binary one itself', () => {
    const b = Broadcast.of(codec, 'm1', 'alice', 'g', data, 1, 5);
    const json = b.json();
    const shared = new Uint8Array(new SharedArrayBuffer(json.byteLength + 8), 4, json.byteLength);
    shared.set(json);
    const received = fromRingPayload(codec, shared);
    assert.deepEqual(readFrame(received.binary(), 1 << 20, inflateLz4), readFrame(b.binary(), 1 << 20, inflateLz4));
  });
});

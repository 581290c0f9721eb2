/**
 * The plain-TypeScript LZ4 encoders (src/protocol/lz4-encode.ts), above all the high-compression
 * one the server uses for broadcasts to many: what either writes is an ordinary LZ4 block that
 * lz4-napi and src/protocol/lz4-block.ts inflate to the same bytes, whatever the input (empty,
 * tiny, incompressible, one byte repeated, longer than the 64 KiB window), call after call
 * (the high-compression encoder keeps its hash chains between calls); and the codec picks it
 * only for a frame sent to many.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import lz4 from 'lz4-napi';
import { Codec } from '../src/codec/codec.js';
import { deflateLz4, deflateLz4HC, deflateLz4Many, HC_MAX_BYTES, inflateLz4 } from '../src/codec/lz4.js';
import { inflateBlock, inflateJs } from '../src/protocol/lz4-block.js';
import { compressBlock, compressBlockHC, deflateHC, deflateJs } from '../src/protocol/lz4-encode.js';
import { readFrame } from '../src/protocol/msgpack-codec.js';
import { Broadcast } from '../src/shard/broadcast.js';

const sizePrefix = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

/** Both decoders give `src` back from `block`. */
function inflatesTo(block: Uint8Array, src: Uint8Array): void {
  assert.deepEqual(inflateBlock(block, src.byteLength), src);
  assert.deepEqual(new Uint8Array(lz4.uncompressSync(Buffer.concat([sizePrefix(src.byteLength), block]))), src);
}

/** Chat-like text: words that repeat, with the odd number, as messages have. */
function chat(bytes: number, seed: number): Uint8Array {
  const words = ['deploy', 'the', 'build', 'failed', 'again', 'on', 'main', 'can', 'you', 'check', 'logs', 'ok', 'merged', 'thanks', 'review', 'please'];
  let text = '';
  for (let i = seed; text.length < bytes; i++) text += words[(i * 7 + (i >> 2) + ((i * i) % 5)) % words.length] + (i % 11 === 0 ? `. #${i} ` : ' ');
  return new TextEncoder().encode(text.slice(0, bytes));
}

const inputs = fc.oneof(
  fc.uint8Array({ maxLength: 3000 }),
  // Repetitive: matches, overlapping matches (a unit shorter than 4 bytes repeats itself).
  fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.integer({ min: 1, max: 400 })).map(([unit, times]) => {
    const out = new Uint8Array(unit.length * times);
    for (let i = 0; i < times; i++) out.set(unit, i * unit.length);
    return out;
  }),
  fc.tuple(fc.integer({ min: 0, max: 6000 }), fc.nat()).map(([n, seed]) => chat(n, seed)),
);

describe('LZ4 high compression (compressBlockHC)', () => {
  test('any input, call after call: an ordinary block that lz4-napi and lz4-block.ts inflate to the same bytes', () => {
    // Successive calls: the chains an earlier call left behind must never be followed.
    fc.assert(
      fc.property(inputs, fc.integer({ min: 1, max: 300 }), (src, attempts) => inflatesTo(compressBlockHC(src, 0, attempts), src)),
      { numRuns: 400 },
    );
  });

  test('the edges of the format: empty, shorter than a match may start in, one byte repeated, incompressible', () => {
    for (let n = 0; n <= 16; n++) inflatesTo(compressBlockHC(new Uint8Array(n).fill(7)), new Uint8Array(n).fill(7));
    const zeros = new Uint8Array(200_000); // match lengths of many 255-bytes, offset 1
    const block = compressBlockHC(zeros);
    assert.ok(block.length < 1000, `${block.length} bytes`);
    inflatesTo(block, zeros);
    const random = new Uint8Array(randomBytes(100_000));
    const stored = compressBlockHC(random);
    assert.ok(stored.length <= random.length + Math.ceil(random.length / 255) + 16, 'within the worst-case bound');
    inflatesTo(stored, random);
  });

  test('longer than the 64 KiB window: no match reaches further back than an offset can say', () => {
    const unit = chat(20_000, 3);
    const far = new Uint8Array(300_000);
    // The same 20 KB at 0 and again past 64 KiB of random bytes, then close together.
    far.set(unit, 0);
    far.set(randomBytes(70_000), 20_000);
    far.set(unit, 90_000);
    far.set(unit, 110_000);
    far.set(chat(170_000, 9), 130_000);
    inflatesTo(compressBlockHC(far), far);
  });

  test('smaller than the fast encoder and than lz4-napi on chat text', () => {
    for (const size of [4096, 65_536]) {
      const text = chat(size, 5);
      const hc = compressBlockHC(text).length;
      assert.ok(hc < compressBlock(text).length, `${size}: HC ${hc} against the fast encoder`);
      assert.ok(hc + 4 < lz4.compressSync(Buffer.from(text)).length, `${size}: HC ${hc} against lz4-napi`);
    }
  });

  test('headroom: the block starts after it, the Deflate forms put the 4-byte length there', () => {
    const text = chat(3000, 1);
    const block = compressBlockHC(text);
    assert.deepEqual(compressBlockHC(text, 5).subarray(5), block);
    for (const deflate of [deflateHC, deflateLz4HC, deflateJs]) {
      const prefixed = deflate(text);
      assert.equal(Buffer.from(prefixed).readUInt32LE(0), text.length);
      assert.deepEqual(inflateJs(prefixed, text.length), text);
      assert.deepEqual(new Uint8Array(inflateLz4(prefixed, text.length)), text);
    }
  });
});

describe('where the server uses it: a frame compressed once for many recipients', () => {
  const codec = new Codec({ compression: true, lz4Threshold: 1024, hcMinRecipients: 3, offloadThreshold: 1 << 20, poolSize: 0, queueLimit: 1 });
  const data = { text: new TextDecoder().decode(chat(4000, 2)) };

  test('deflateFor: lz4-napi below hcMinRecipients, high compression from it on (up to HC_MAX_BYTES); none with compression off or 0', () => {
    assert.equal(codec.deflateFor(2), deflateLz4);
    assert.equal(codec.deflateFor(3), deflateLz4Many);
    const small = chat(HC_MAX_BYTES, 4);
    const large = chat(HC_MAX_BYTES + 1, 4);
    assert.deepEqual(deflateLz4Many(small), deflateLz4HC(small));
    assert.deepEqual(deflateLz4Many(large), deflateLz4(large), 'above it, a stall of the loop: the fast mode');
    assert.equal(new Codec({ compression: false, lz4Threshold: 1024, hcMinRecipients: 3, offloadThreshold: 1, poolSize: 0, queueLimit: 1 }).deflateFor(100), null);
    assert.equal(new Codec({ compression: true, lz4Threshold: 1024, hcMinRecipients: 0, offloadThreshold: 1, poolSize: 0, queueLimit: 1 }).deflateFor(1e6), deflateLz4);
  });

  test('a broadcast to many is smaller and decodes to the same message as one to few', () => {
    const few = Broadcast.of(codec, 'm1', 'alice', 'g', data, 1, 5).binary(2);
    const many = Broadcast.of(codec, 'm1', 'alice', 'g', data, 1, 5).binary(3);
    assert.ok(many.length < few.length, `${many.length} against ${few.length}`);
    assert.deepEqual(readFrame(many, 1 << 20, inflateLz4), readFrame(few, 1 << 20, inflateLz4));
    assert.deepEqual(readFrame(many, 1 << 20, inflateJs), readFrame(few, 1 << 20, inflateLz4));
  });

  test('the first caller decides; every later one gets the same bytes', () => {
    const b = Broadcast.of(codec, 'm1', 'alice', 'g', data, 1, 5);
    const first = b.binary(100);
    assert.equal(b.binary(1), first);
  });
});

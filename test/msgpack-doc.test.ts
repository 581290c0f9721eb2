/**
 * docs/PROTOCOL.md's worked examples of the binary form are true: each ```hex block decodes,
 * with lz4-napi and with the plain-TypeScript LZ4 decoder alike, to the ```json block after it,
 * and our encoders write exactly those bytes (so a client written from the page interoperates).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { deflateLz4, inflateLz4 } from '../src/codec/lz4.js';
import { inflateJs } from '../src/protocol/lz4-block.js';
import { readFrame, writeFrame } from '../src/protocol/msgpack-codec.js';
import { declaredSize, isCompressed } from '../src/protocol/wire.js';

const doc = readFileSync(new URL('../../docs/PROTOCOL.md', import.meta.url), 'utf8');
const examples = [...doc.matchAll(/```hex\n([\s\S]*?)```\s*```json\n([\s\S]*?)```/g)].map((m) => ({
  bytes: Buffer.from(m[1]!.replace(/\s+/g, ''), 'hex'),
  value: JSON.parse(m[2]!) as Record<string, unknown>,
}));

describe('the worked examples of the binary form in docs/PROTOCOL.md', () => {
  test('there are two: one small frame, one compressed', () => {
    assert.equal(examples.length, 2);
    assert.deepEqual(examples.map((e) => isCompressed(e.bytes)), [false, true]);
  });

  for (const [i, { bytes, value }] of examples.entries()) {
    test(`example ${i + 1} (${value.op}, ${bytes.length} bytes) decodes to its JSON with either LZ4 decoder`, () => {
      assert.deepEqual(readFrame(bytes, 64 * 1024, inflateLz4), value);
      assert.deepEqual(readFrame(bytes, 64 * 1024, inflateJs), value);
    });

    test(`example ${i + 1} is what our encoder writes for that JSON`, () => {
      const written = isCompressed(bytes) ? writeFrame(value, deflateLz4, 0) : writeFrame(value);
      assert.equal(Buffer.from(written).toString('hex'), bytes.toString('hex'));
    });
  }

  test('the sizes the page states match the bytes', () => {
    assert.match(doc, new RegExp(`not compressed; ${examples[0]!.bytes.length} bytes`));
    const compressed = examples[1]!.bytes;
    assert.match(doc, new RegExp(`${declaredSize(compressed)}-byte body compresses to\\s+an LZ4 block of ${compressed.length - 5} bytes; ${compressed.length} bytes in all`));
  });
});

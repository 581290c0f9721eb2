/**
 * An LZ4 block decoder in plain TypeScript (browser-safe), for clients that cannot load
 * lz4-napi: the SDK in a browser, and the tests that check the documented examples against
 * an implementation written from the format alone. The server itself uses lz4-napi.
 *
 * The block format (https://github.com/lz4/lz4/blob/dev/doc/lz4_Block_format.md): sequences
 * of [token][literal length+][literals][offset u16 LE][match length+]. The token's high
 * nibble is the literal length, the low nibble the match length minus 4; 15 means "add the
 * bytes that follow until one is under 255". The last sequence has literals only.
 *
 * Every read and write is bounds-checked: hostile input throws, it never reads outside the
 * input or writes past `size` bytes, which is allocated once (the caller has checked it).
 */
import { LZ4_SIZE_BYTES, type Inflate } from './wire.js';

const MIN_MATCH = 4;

/** Decodes `block` (no length prefix) into exactly `size` bytes; throws on corrupt input. */
export function inflateBlock(block: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let i = 0;
  let o = 0;
  const end = block.byteLength;
  while (i < end) {
    const token = block[i++]!;
    let literals = token >>> 4;
    if (literals === 15) literals += readLength(block, i, (n) => (i = n));
    if (i + literals > end || o + literals > size) throw new RangeError('LZ4 literals run past the block or the declared size');
    out.set(block.subarray(i, i + literals), o);
    i += literals;
    o += literals;
    if (i === end) break; // the last sequence: literals only
    if (i + 2 > end) throw new RangeError('LZ4 match offset cut short');
    const offset = block[i]! | (block[i + 1]! << 8);
    i += 2;
    if (offset === 0 || offset > o) throw new RangeError('LZ4 match offset outside the output');
    let match = (token & 15) + MIN_MATCH;
    if ((token & 15) === 15) match += readLength(block, i, (n) => (i = n));
    if (o + match > size) throw new RangeError('LZ4 match runs past the declared size');
    // Byte by byte: a match may overlap the bytes it is copying (offset < length repeats them).
    for (let from = o - offset, stop = o + match; o < stop; ) out[o++] = out[from++]!;
  }
  if (o !== size) throw new RangeError(`LZ4 block inflates to ${o} bytes, not ${size}`);
  return out;
}

/** The continuation bytes of a length (each 255 means another follows). */
function readLength(block: Uint8Array, at: number, moved: (to: number) => void): number {
  let total = 0;
  let byte: number;
  do {
    if (at >= block.byteLength) throw new RangeError('LZ4 length cut short');
    byte = block[at++]!;
    total += byte;
  } while (byte === 255);
  moved(at);
  return total;
}

/** wire.ts's Inflate over this decoder: the prefixed form lz4-napi writes. */
export const inflateJs: Inflate = (prefixed, size) => inflateBlock(prefixed.subarray(LZ4_SIZE_BYTES), size);

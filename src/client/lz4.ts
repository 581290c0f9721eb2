/**
 * An LZ4 block encoder in plain JavaScript, for the client's frames of at least 1 KiB. The
 * client's own because src/protocol has only the decoder (lz4-block.ts, which the client uses
 * too): the server compresses with lz4-napi, which is native. About 80 lines instead of a
 * dependency: the npm LZ4 ports implement the frame format or assume Node's Buffer.
 * test/client-codec.test.ts checks it against lz4-napi and src/protocol/lz4-block.ts.
 */
import { LZ4_SIZE_BYTES, type Deflate } from '../protocol/wire.js';

const MIN_MATCH = 4;
/** A match may not start in the last 12 bytes, and the last 5 bytes are always literals (format rules). */
const MF_LIMIT = 12;
const LAST_LITERALS = 5;
const MAX_OFFSET = 65_535;
const HASH_LOG = 12;

const read32 = (b: Uint8Array, i: number): number => b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24);

/** wire.ts's Deflate: the 4-byte little-endian uncompressed length, then the block (what lz4-napi writes). */
export const deflateJs: Deflate = (body) => {
  const prefixed = compressBlock(body, LZ4_SIZE_BYTES);
  new DataView(prefixed.buffer, prefixed.byteOffset).setUint32(0, body.byteLength, true);
  return prefixed;
};

/**
 * Compresses `src` into one block (greedy, one hash probe per position: fast, not the
 * smallest), after `headroom` bytes left for the caller.
 */
export function compressBlock(src: Uint8Array, headroom = 0): Uint8Array {
  const n = src.length;
  const out = new Uint8Array(headroom + n + Math.ceil(n / 255) + 16);
  let op = headroom;
  let anchor = 0;
  if (n > MF_LIMIT) {
    const table = new Int32Array(1 << HASH_LOG).fill(-1);
    const matchStartLimit = n - MF_LIMIT;
    const matchEndLimit = n - LAST_LITERALS;
    let ip = 0;
    while (ip < matchStartLimit) {
      const sequence = read32(src, ip);
      const hash = Math.imul(sequence, 2654435761) >>> (32 - HASH_LOG);
      const candidate = table[hash]!;
      table[hash] = ip;
      if (candidate < 0 || ip - candidate > MAX_OFFSET || read32(src, candidate) !== sequence) {
        ip++;
        continue;
      }
      let length = MIN_MATCH;
      while (ip + length < matchEndLimit && src[ip + length] === src[candidate + length]) length++;
      op = writeSequence(out, op, src, anchor, ip - anchor, ip - candidate, length);
      ip += length;
      anchor = ip;
    }
  }
  op = writeSequence(out, op, src, anchor, n - anchor, 0, 0);
  return out.subarray(0, op);
}

/** One sequence: literals, then (unless `matchLength` is 0: the last one) a match. */
function writeSequence(out: Uint8Array, op: number, src: Uint8Array, from: number, literals: number, offset: number, matchLength: number): number {
  const matchCode = matchLength === 0 ? 0 : matchLength - MIN_MATCH;
  out[op++] = (Math.min(literals, 15) << 4) | Math.min(matchCode, 15);
  op = writeLength(out, op, literals);
  out.set(src.subarray(from, from + literals), op);
  op += literals;
  if (matchLength === 0) return op;
  out[op++] = offset & 255;
  out[op++] = offset >>> 8;
  return writeLength(out, op, matchCode);
}

/** The extra length bytes after a nibble of 15: 255s, then the rest. */
function writeLength(out: Uint8Array, op: number, length: number): number {
  if (length < 15) return op;
  let rest = length - 15;
  while (rest >= 255) {
    out[op++] = 255;
    rest -= 255;
  }
  out[op++] = rest;
  return op;
}

/**
 * LZ4 block format (no frame header), in plain JavaScript for browsers: lz4-napi is native.
 * The wire carries what lz4-napi's `compress` writes, a 4-byte little-endian uncompressed
 * length and then one block; this module handles the block. About 100 lines instead of a
 * dependency: the npm LZ4 ports are either frame-format-only, or several times this size
 * with Node Buffer assumptions. test/client-codec.test.ts checks both directions against
 * lz4-napi.
 */

const MIN_MATCH = 4;
/** A match may not start in the last 12 bytes, and the last 5 bytes are always literals (format rules). */
const MF_LIMIT = 12;
const LAST_LITERALS = 5;
const MAX_OFFSET = 65_535;
const HASH_LOG = 12;

/** Decompresses one block into exactly `length` bytes; throws on a block that does not. */
export function decompressBlock(src: Uint8Array, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let ip = 0;
  let op = 0;
  const end = src.length;
  while (ip < end) {
    const token = src[ip++]!;
    let literals = token >>> 4;
    if (literals === 15) {
      let byte: number;
      do {
        if (ip >= end) throw new RangeError('lz4: truncated literal length');
        byte = src[ip++]!;
        literals += byte;
      } while (byte === 255);
    }
    if (ip + literals > end || op + literals > length) throw new RangeError('lz4: literals overrun');
    out.set(src.subarray(ip, ip + literals), op);
    ip += literals;
    op += literals;
    if (ip === end) break; // the last sequence has literals only
    if (ip + 2 > end) throw new RangeError('lz4: truncated offset');
    const offset = src[ip]! | (src[ip + 1]! << 8);
    ip += 2;
    if (offset === 0 || offset > op) throw new RangeError('lz4: bad match offset');
    let match = (token & 15) + MIN_MATCH;
    if ((token & 15) === 15) {
      let byte: number;
      do {
        if (ip >= end) throw new RangeError('lz4: truncated match length');
        byte = src[ip++]!;
        match += byte;
      } while (byte === 255);
    }
    if (op + match > length) throw new RangeError('lz4: match overrun');
    // Byte by byte: a match may overlap what it is copying (offset < length repeats a run).
    let from = op - offset;
    for (const stop = op + match; op < stop; ) out[op++] = out[from++]!;
  }
  if (op !== length) throw new RangeError(`lz4: block holds ${op} bytes, ${length} declared`);
  return out;
}

const read32 = (b: Uint8Array, i: number): number => b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24);

/** Compresses `src` into one block (greedy, one hash probe per position: fast, not the smallest). */
export function compressBlock(src: Uint8Array): Uint8Array {
  const n = src.length;
  const out = new Uint8Array(n + Math.ceil(n / 255) + 16);
  let op = 0;
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

/**
 * LZ4 block encoders in plain TypeScript (browser-safe). Both write an ordinary LZ4 block
 * (https://github.com/lz4/lz4/blob/dev/doc/lz4_Block_format.md) that any block decoder reads:
 * lz4-napi, ./lz4-block.ts, the reference library. They differ only in how hard they look for
 * matches:
 *
 * - compressBlock(): greedy, one hash probe per position. Fast, not the smallest. The
 *   client's encoder for its frames of at least 1 KiB.
 * - compressBlockHC(): high compression, as LZ4 HC does it: every position goes into hash
 *   chains, the longest match among up to `attempts` earlier positions with the same 4 bytes
 *   is taken, and a match is put off by one byte when the next position has a longer one
 *   (lazy matching). Smaller blocks (6-20% on chat text) for several times the CPU; the server
 *   uses it for what it compresses once and sends to many (src/codec/lz4.ts says when).
 *
 * The Deflate forms (deflateJs, deflateHC) write the 4-byte little-endian length first, as
 * lz4-napi's compress does and the binary frame wants (./wire.ts).
 */
import { LZ4_SIZE_BYTES, type Deflate } from './wire.js';

const MIN_MATCH = 4;
/** A match may not start in the last 12 bytes, and the last 5 bytes are always literals (format rules). */
const MF_LIMIT = 12;
const LAST_LITERALS = 5;
const MAX_OFFSET = 65_535;
const HASH_LOG = 12;

const read32 = (b: Uint8Array, i: number): number => b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24);

/** The worst case: incompressible input grows by a length byte per 255 literals, and a token. */
const bound = (n: number): number => n + Math.ceil(n / 255) + 16;

/** wire.ts's Deflate over compressBlock(). */
export const deflateJs: Deflate = (body) => withSize(compressBlock(body, LZ4_SIZE_BYTES), body.byteLength);

/** wire.ts's Deflate over compressBlockHC() with its default effort. */
export const deflateHC: Deflate = (body) => withSize(compressBlockHC(body, LZ4_SIZE_BYTES), body.byteLength);

function withSize(prefixed: Uint8Array, size: number): Uint8Array {
  new DataView(prefixed.buffer, prefixed.byteOffset).setUint32(0, size, true);
  return prefixed;
}

/**
 * Compresses `src` into one block (greedy, one hash probe per position: fast, not the
 * smallest), after `headroom` bytes left for the caller.
 */
export function compressBlock(src: Uint8Array, headroom = 0): Uint8Array {
  const n = src.length;
  const out = new Uint8Array(headroom + bound(n));
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

// --- high compression -------------------------------------------------------------------

/**
 * Candidates examined per position by default. LZ4 HC's level 9 examines 256; on chat text 64
 * gives blocks within 0.5% of that size for about 80% of the time (bench:codec, frames).
 */
export const HC_ATTEMPTS = 64;
const HC_HASH_LOG = 15;

/**
 * The hash chains, kept between calls (allocated on first use: 192 KiB): hcHead[hash] is the
 * last position with that hash, plus the call's `base`; hcChain[position & 0xffff] the
 * distance back to the previous position with the same hash (0: none). Entries of earlier
 * calls are below the current base, so no call clears the tables (clearing 128 KiB would cost
 * more than compressing a 4 KB message).
 */
let hcHead: Int32Array | null = null;
let hcChain: Uint16Array | null = null;
let hcBase = 1;

/** What hcFind() found: the longest match's length (under 4: none) and offset. */
let hcLength = 0;
let hcOffset = 0;
/** The first position of the current call not yet in the chains. */
let hcNext = 0;

/**
 * Compresses `src` into one block with high compression (hash chains, lazy matching), after
 * `headroom` bytes left for the caller. `attempts`: candidates examined per position.
 */
export function compressBlockHC(src: Uint8Array, headroom = 0, attempts = HC_ATTEMPTS): Uint8Array {
  const n = src.length;
  const out = new Uint8Array(headroom + bound(n));
  let op = headroom;
  let anchor = 0;
  if (n > MF_LIMIT) {
    const head = (hcHead ??= new Int32Array(1 << HC_HASH_LOG));
    const chain = (hcChain ??= new Uint16Array(MAX_OFFSET + 1));
    if (hcBase + n + 1 > 0x7fff_ffff) {
      head.fill(0);
      hcBase = 1;
    }
    const base = hcBase;
    hcBase += n + 1;
    hcNext = 0;
    const matchStartLimit = n - MF_LIMIT;
    const matchEndLimit = n - LAST_LITERALS;
    let ip = 0;
    while (ip < matchStartLimit) {
      hcFind(src, head, chain, base, ip, matchEndLimit, attempts);
      if (hcLength < MIN_MATCH) {
        ip++;
        continue;
      }
      // Lazy: a longer match one byte on is worth a literal.
      let matchLength = hcLength;
      let matchOffset = hcOffset;
      while (ip + 1 < matchStartLimit) {
        hcFind(src, head, chain, base, ip + 1, matchEndLimit, attempts);
        if (hcLength <= matchLength) break;
        ip++;
        matchLength = hcLength;
        matchOffset = hcOffset;
      }
      op = writeSequence(out, op, src, anchor, ip - anchor, matchOffset, matchLength);
      ip += matchLength;
      anchor = ip;
    }
  }
  op = writeSequence(out, op, src, anchor, n - anchor, 0, 0);
  return out.subarray(0, op);
}

/** Puts the positions up to `ip` into the chains, then sets hcLength and hcOffset to the longest match at `ip`. */
function hcFind(src: Uint8Array, head: Int32Array, chain: Uint16Array, base: number, ip: number, matchEndLimit: number, attempts: number): void {
  let next = hcNext;
  for (; next <= ip; next++) {
    const hash = Math.imul(read32(src, next), 2654435761) >>> (32 - HC_HASH_LOG);
    const previous = head[hash]! - base;
    const distance = previous < 0 ? 0 : next - previous;
    chain[next & MAX_OFFSET] = distance > MAX_OFFSET ? 0 : distance;
    head[hash] = next + base;
  }
  hcNext = next;
  let length = 0;
  let offset = 0;
  const longest = matchEndLimit - ip;
  const sequence = read32(src, ip);
  let candidate = ip;
  for (let left = attempts; left > 0; left--) {
    const distance = chain[candidate & MAX_OFFSET]!;
    if (distance === 0) break;
    candidate -= distance;
    if (ip - candidate > MAX_OFFSET) break;
    // The byte that would make it longer than the best so far, first: most candidates fail there.
    if (src[candidate + length] !== src[ip + length] || read32(src, candidate) !== sequence) continue;
    let l = MIN_MATCH;
    while (l < longest && src[candidate + l] === src[ip + l]) l++;
    if (l > length) {
      length = l;
      offset = ip - candidate;
      if (l === longest) break;
    }
  }
  hcLength = length;
  hcOffset = offset;
}

// --- the block format -------------------------------------------------------------------

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

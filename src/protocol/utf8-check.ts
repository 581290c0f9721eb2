/**
 * Whether bytes are well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing past
 * U+10FFFF), checked in place. A MessagePack `str` that is not would be decoded with U+FFFD in
 * place of its bad bytes: a message changed in transit, and a `ref` the client cannot match.
 * JSON text frames never get this far (uWS refuses a text frame of bad UTF-8).
 */
import { isUtf8 } from 'node:buffer';

/**
 * From this many bytes, Node's own check (simdutf) is the cheaper, the view it needs included:
 * for 4 KB over ten times (a one-off timing on a busy machine); shorter strings (keys, names,
 * refs) stay in the loop, which allocates nothing.
 */
const NATIVE_FROM = 32;

export function isWellFormedUtf8(bytes: Uint8Array, from: number, to: number): boolean {
  if (to - from >= NATIVE_FROM) return isUtf8(bytes.subarray(from, to));
  let i = from;
  while (i < to) {
    const b = bytes[i]!;
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) need = 2;
    else if (b >= 0xf0 && b <= 0xf4) need = 3;
    else return false; // a continuation byte first, an overlong C0/C1 lead, or past U+10FFFF
    if (i + need >= to) return false;
    // The second byte's range rules out overlong forms (E0, F0), surrogates (ED) and > U+10FFFF (F4).
    const min = b === 0xe0 ? 0xa0 : b === 0xf0 ? 0x90 : 0x80;
    const max = b === 0xed ? 0x9f : b === 0xf4 ? 0x8f : 0xbf;
    const second = bytes[i + 1]!;
    if (second < min || second > max) return false;
    for (let k = 2; k <= need; k++) {
      const c = bytes[i + k]!;
      if (c < 0x80 || c > 0xbf) return false;
    }
    i += need + 1;
  }
  return true;
}

/**
 * MessagePack for the values a JSON frame can hold (nil, booleans, numbers, strings, arrays,
 * maps with string keys), in plain JavaScript for browsers. The client's own because
 * src/protocol's MessagePack is msgpackr (src/protocol/msgpack-codec.ts): it runs in browsers,
 * but bundled it is larger than the whole client (32.6 KB minified, 12.1 KB gzip, against this
 * module's 4.6 KB), and it renames a key `__proto__` where JSON.parse keeps it, so a msgpack
 * client would see other data than a JSON one. test/client-codec.test.ts checks this module
 * against msgpackr in both directions. Decoding is for hostile input: every length is checked
 * against what is left, nesting is bounded as the server bounds it, the values' cost is bounded
 * by the caller (decode's `budget`), and map keys such as `__proto__` become own properties, as
 * JSON.parse makes them.
 */

import { CONTAINER_COST, VALUE_COST } from './heap-cost.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

class Writer {
  bytes = new Uint8Array(256);
  view = new DataView(this.bytes.buffer);
  length = 0;

  ensure(more: number): void {
    if (this.length + more <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < this.length + more) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
    this.view = new DataView(grown.buffer);
  }

  byte(b: number): void {
    this.ensure(1);
    this.bytes[this.length++] = b;
  }

  /** A type byte followed by an unsigned big-endian integer of `size` bytes. */
  head(type: number, size: 1 | 2 | 4, value: number): void {
    this.ensure(1 + size);
    this.bytes[this.length++] = type;
    if (size === 1) this.view.setUint8(this.length, value);
    else if (size === 2) this.view.setUint16(this.length, value);
    else this.view.setUint32(this.length, value);
    this.length += size;
  }
}

/** Encodes `value`; throws a TypeError for what JSON could not carry either (BigInt, symbols). */
export function encode(value: unknown): Uint8Array {
  const w = new Writer();
  write(w, value, 0);
  return w.bytes.subarray(0, w.length);
}

const MAX_ENCODE_DEPTH = 512;

function write(w: Writer, value: unknown, depth: number): void {
  if (depth > MAX_ENCODE_DEPTH) throw new TypeError('value nests too deep to encode');
  switch (typeof value) {
    case 'string':
      return writeString(w, value);
    case 'number':
      return writeNumber(w, value);
    case 'boolean':
      return w.byte(value ? 0xc3 : 0xc2);
    case 'undefined':
      return w.byte(0xc0);
    case 'object':
      if (value === null) return w.byte(0xc0);
      // ocs.v1 frames carry what JSON can say: the server refuses bin (and extension types).
      if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) throw new TypeError('binary data cannot travel in an ocs.v1 frame: encode it (base64) first');
      if (Array.isArray(value)) {
        lengthHead(w, value.length, 0x90, -1, 0xdc, 0xdd);
        for (const item of value) write(w, item, depth + 1);
        return;
      }
      if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return write(w, (value as { toJSON(): unknown }).toJSON(), depth + 1);
      return writeMap(w, value as Record<string, unknown>, depth);
    default:
      throw new TypeError(`cannot encode a ${typeof value}`);
  }
}

function writeMap(w: Writer, object: Record<string, unknown>, depth: number): void {
  // Like JSON: keys whose value is undefined or a function are left out.
  let count = 0;
  for (const key in object) if (Object.hasOwn(object, key) && keep(object[key])) count++;
  lengthHead(w, count, 0x80, -1, 0xde, 0xdf);
  for (const key in object) {
    if (!Object.hasOwn(object, key) || !keep(object[key])) continue;
    writeString(w, key);
    write(w, object[key], depth + 1);
  }
}

const keep = (value: unknown): boolean => value !== undefined && typeof value !== 'function' && typeof value !== 'symbol';

/** A length in the smallest form: fix (under 16, or 32 for strings), 8-bit, 16-bit or 32-bit. */
function lengthHead(w: Writer, length: number, fix: number, b8: number, b16: number, b32: number): void {
  const fixLimit = fix === 0xa0 ? 32 : 16;
  if (fix >= 0 && length < fixLimit) w.byte(fix | length);
  else if (b8 >= 0 && length < 0x100) w.head(b8, 1, length);
  else if (length < 0x10000) w.head(b16, 2, length);
  else w.head(b32, 4, length);
}

function writeString(w: Writer, s: string): void {
  // At most 3 bytes per UTF-16 unit; the head is written for the real length afterwards.
  const max = s.length * 3;
  const headSize = max < 32 ? 1 : max < 0x100 ? 2 : max < 0x10000 ? 3 : 5;
  w.ensure(headSize + max);
  const start = w.length + headSize;
  const { written } = encoder.encodeInto(s, w.bytes.subarray(start));
  const size = written < 32 ? 1 : written < 0x100 ? 2 : written < 0x10000 ? 3 : 5;
  if (size !== headSize) w.bytes.copyWithin(w.length + size, start, start + written);
  lengthHead(w, written, 0xa0, 0xd9, 0xda, 0xdb);
  w.length += written;
}

function writeNumber(w: Writer, n: number): void {
  if (Number.isInteger(n) && Math.abs(n) <= 0xffffffff) {
    if (n >= 0) {
      if (n < 0x80) return w.byte(n);
      if (n < 0x100) return w.head(0xcc, 1, n);
      if (n < 0x10000) return w.head(0xcd, 2, n);
      return w.head(0xce, 4, n);
    }
    if (n >= -32) return w.byte(n & 0xff);
    w.ensure(5);
    if (n >= -0x80) {
      w.bytes[w.length] = 0xd0;
      w.view.setInt8(w.length + 1, n);
      w.length += 2;
    } else if (n >= -0x8000) {
      w.bytes[w.length] = 0xd1;
      w.view.setInt16(w.length + 1, n);
      w.length += 3;
    } else if (n >= -0x80000000) {
      w.bytes[w.length] = 0xd2;
      w.view.setInt32(w.length + 1, n);
      w.length += 5;
    } else {
      writeFloat(w, n);
    }
    return;
  }
  writeFloat(w, n);
}

function writeFloat(w: Writer, n: number): void {
  if (!Number.isFinite(n)) return w.byte(0xc0); // as JSON.stringify: NaN and Infinity become null
  w.ensure(9);
  w.bytes[w.length] = 0xcb;
  w.view.setFloat64(w.length + 1, n);
  w.length += 9;
}

/**
 * Decodes one value filling `bytes` exactly; throws on anything else. `budget`: the most the
 * values may cost (heap-cost.ts), so that bytes inflated from a small LZ4 block
 * cannot become millions of objects; a plain body never exceeds 64 per byte.
 */
export function decode(bytes: Uint8Array, maxDepth = 64, budget = Infinity): unknown {
  const r = { bytes, view: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), pos: 0, maxDepth, budget };
  const value = read(r, 1);
  if (r.pos !== bytes.length) throw new RangeError('msgpack: bytes after the value');
  return value;
}

interface Reader {
  bytes: Uint8Array;
  view: DataView;
  pos: number;
  maxDepth: number;
  /** What the values still to be read may cost. */
  budget: number;
}

function spend(r: Reader, cost: number): void {
  if ((r.budget -= cost) < 0) throw overBudget();
}

const overBudget = (): RangeError => new RangeError('msgpack: more values than a frame of its size may carry, or maxFrameHeapBytes allows');

function take(r: Reader, n: number): number {
  const at = r.pos;
  if (at + n > r.bytes.length) throw new RangeError('msgpack: truncated');
  r.pos = at + n;
  return at;
}

function read(r: Reader, depth: number): unknown {
  const type = r.bytes[take(r, 1)]!;
  spend(r, VALUE_COST);
  if (type < 0x80) return type;
  if (type >= 0xe0) return type - 0x100;
  if (type >= 0xa0 && type <= 0xbf) return readString(r, type & 31);
  if (type >= 0x90 && type <= 0x9f) return readArray(r, type & 15, depth);
  if (type >= 0x80 && type <= 0x8f) return readMap(r, type & 15, depth);
  const v = r.view;
  switch (type) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xca: return v.getFloat32(take(r, 4));
    case 0xcb: return v.getFloat64(take(r, 8));
    case 0xcc: return v.getUint8(take(r, 1));
    case 0xcd: return v.getUint16(take(r, 2));
    case 0xce: return v.getUint32(take(r, 4));
    case 0xcf: return Number(v.getBigUint64(take(r, 8)));
    case 0xd0: return v.getInt8(take(r, 1));
    case 0xd1: return v.getInt16(take(r, 2));
    case 0xd2: return v.getInt32(take(r, 4));
    case 0xd3: return Number(v.getBigInt64(take(r, 8)));
    case 0xd9: return readString(r, v.getUint8(take(r, 1)));
    case 0xda: return readString(r, v.getUint16(take(r, 2)));
    case 0xdb: return readString(r, v.getUint32(take(r, 4)));
    case 0xdc: return readArray(r, v.getUint16(take(r, 2)), depth);
    case 0xdd: return readArray(r, v.getUint32(take(r, 4)), depth);
    case 0xde: return readMap(r, v.getUint16(take(r, 2)), depth);
    case 0xdf: return readMap(r, v.getUint32(take(r, 4)), depth);
    default:
      // bin (0xc4-0xc6) and extension types (0xc7-0xc9, 0xd4-0xd8) carry nothing a frame may hold; 0xc1 is never used.
      throw new RangeError(`msgpack: type 0x${type.toString(16)} is not allowed in a frame`);
  }
}

function readString(r: Reader, length: number): string {
  const at = take(r, length);
  return decoder.decode(r.bytes.subarray(at, at + length));
}

/**
 * A container's claimed `length` is checked before anything is allocated: each item takes at
 * least a byte (`size` for a map's pair) and costs at least VALUE_COST. Items are pushed, not
 * allocated up front: nested claims each within the budget would still add up to many times it.
 */
function open(r: Reader, length: number, size: number, depth: number): void {
  if (depth > r.maxDepth) throw new RangeError('msgpack: nested too deep');
  if (length * size > r.bytes.length - r.pos) throw new RangeError('msgpack: truncated');
  spend(r, CONTAINER_COST);
  if (length * size * VALUE_COST > r.budget) throw overBudget();
}

function readArray(r: Reader, length: number, depth: number): unknown[] {
  open(r, length, 1, depth);
  const out: unknown[] = [];
  for (let i = 0; i < length; i++) out.push(read(r, depth + 1));
  return out;
}

function readMap(r: Reader, length: number, depth: number): Record<string, unknown> {
  open(r, length, 2, depth);
  const out: Record<string, unknown> = {};
  for (let i = 0; i < length; i++) {
    const key = read(r, depth + 1);
    if (typeof key !== 'string' && typeof key !== 'number') throw new RangeError('msgpack: map keys must be strings');
    const value = read(r, depth + 1);
    const name = String(key);
    if (name === '__proto__') Object.defineProperty(out, name, { value, enumerable: true, writable: true, configurable: true });
    else out[name] = value;
  }
  return out;
}

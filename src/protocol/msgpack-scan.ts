/**
 * A bounded check of a MessagePack body before anything is decoded from it, so that hostile
 * input costs one pass over its bytes and no allocation: exactly one value that spans the
 * body, a map at the top, nesting at most `maxDepth` deep, every declared length inside the
 * body, string keys only, strings of well-formed UTF-8, and nothing JSON cannot say (bin,
 * ext, the never-used 0xc1, NaN and infinities). What passes decodes to the value the same
 * frame would be in JSON, so both encodings reach the same validation (frames.ts) and the
 * same recipients.
 *
 * Iterative, with a fixed stack: a million nested arrays cost their bytes, not the call stack.
 */

import { isWellFormedUtf8 } from './utf8-check.js';

/** Why a body was refused, for the `err` frame's message; null when it may be decoded. */
export type ScanVerdict = string | null;

const MAX_STACK = 256;
/** Items still expected at each open container level (a map's count is doubled: keys and values). */
const remaining = new Float64Array(MAX_STACK + 1);
/** 1 when the level is a map: then its even items are keys and must be strings. */
const mapLevel = new Uint8Array(MAX_STACK + 1);

export function scanMsgpack(body: Uint8Array, maxDepth: number): ScanVerdict {
  if (maxDepth > MAX_STACK) throw new RangeError(`maxDepth over ${MAX_STACK}`);
  const end = body.byteLength;
  if (end === 0) return 'empty MessagePack body';
  const first = body[0]!;
  if (!((first >= 0x80 && first <= 0x8f) || first === 0xde || first === 0xdf)) return 'a frame must be a MessagePack map';
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  let at = 0;
  let depth = 0;
  // The top level is one value.
  remaining[0] = 1;
  mapLevel[0] = 0;
  while (depth >= 0) {
    if (remaining[depth] === 0) {
      depth--;
      continue;
    }
    if (at >= end) return 'MessagePack body cut short';
    const isKey = mapLevel[depth] === 1 && remaining[depth]! % 2 === 0;
    remaining[depth]!--;
    const b = body[at++]!;
    if (isKey && !((b >= 0xa0 && b <= 0xbf) || b === 0xd9 || b === 0xda || b === 0xdb)) return 'MessagePack map keys must be strings';
    let length = -1; // bytes to skip (a scalar's payload)
    let text = -1; // where a string's bytes start
    let items = -1; // a container's items
    let isMap = false;
    if (b <= 0x7f || b >= 0xe0) length = 0;
    else if (b <= 0x8f) {
      items = (b & 0x0f) * 2;
      isMap = true;
    } else if (b <= 0x9f) items = b & 0x0f;
    else if (b <= 0xbf) {
      length = b & 0x1f;
      text = at;
    }
    else
      switch (b) {
        case 0xc0:
        case 0xc2:
        case 0xc3:
          length = 0;
          break;
        case 0xca:
          if (at + 4 > end) return 'MessagePack body cut short';
          if (!Number.isFinite(view.getFloat32(at))) return 'NaN and infinities have no JSON form';
          length = 4;
          break;
        case 0xcb:
          if (at + 8 > end) return 'MessagePack body cut short';
          if (!Number.isFinite(view.getFloat64(at))) return 'NaN and infinities have no JSON form';
          length = 8;
          break;
        case 0xcc:
        case 0xd0:
          length = 1;
          break;
        case 0xcd:
        case 0xd1:
          length = 2;
          break;
        case 0xce:
        case 0xd2:
          length = 4;
          break;
        case 0xcf:
        case 0xd3:
          length = 8;
          break;
        case 0xd9:
          if (at + 1 > end) return 'MessagePack body cut short';
          length = body[at]! + 1;
          text = at + 1;
          break;
        case 0xda:
          if (at + 2 > end) return 'MessagePack body cut short';
          length = view.getUint16(at) + 2;
          text = at + 2;
          break;
        case 0xdb:
          if (at + 4 > end) return 'MessagePack body cut short';
          length = view.getUint32(at) + 4;
          text = at + 4;
          break;
        case 0xdc:
          if (at + 2 > end) return 'MessagePack body cut short';
          items = view.getUint16(at);
          at += 2;
          break;
        case 0xdd:
          if (at + 4 > end) return 'MessagePack body cut short';
          items = view.getUint32(at);
          at += 4;
          break;
        case 0xde:
          if (at + 2 > end) return 'MessagePack body cut short';
          items = view.getUint16(at) * 2;
          isMap = true;
          at += 2;
          break;
        case 0xdf:
          if (at + 4 > end) return 'MessagePack body cut short';
          items = view.getUint32(at) * 2;
          isMap = true;
          at += 4;
          break;
        case 0xc4:
        case 0xc5:
        case 0xc6:
          return 'MessagePack bin has no JSON form';
        case 0xc1:
          return 'MessagePack byte 0xc1 is never used';
        default:
          return 'MessagePack extension types are not accepted';
      }
    if (length >= 0) {
      if (at + length > end) return 'MessagePack body cut short';
      if (text >= 0 && !isWellFormedUtf8(body, text, at + length)) return 'MessagePack string is not valid UTF-8';
      at += length;
      continue;
    }
    // Every item takes at least one byte: a count beyond what is left is a lie.
    if (items > end - at) return 'MessagePack body cut short';
    // Counted like JSON's: the frame map is level 1, and an empty container is a level too.
    if (depth + 1 > maxDepth) return `frame is nested deeper than ${maxDepth} levels`;
    if (items === 0) continue;
    depth++;
    remaining[depth] = items;
    mapLevel[depth] = isMap ? 1 : 0;
  }
  if (at !== end) return 'bytes after the MessagePack value';
  return null;
}

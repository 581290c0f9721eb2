/**
 * The `ocs.v1.msgpack` encoding: one binary frame, a flags byte (./wire.ts) and one MessagePack
 * map with the fields of the JSON form. Both directions live here, for the server, the SDK and
 * the load tester alike; browser-safe (msgpackr runs in browsers; LZ4 is passed in).
 *
 * msgpackr is configured for untrusted input: no records or structures (msgpackr's own
 * extensions, which would let a client define shapes the decoder then trusts), maps as plain
 * objects, 64-bit integers as numbers (a BigInt would make JSON.stringify throw), and a key
 * `__proto__` arrives as `__proto_` (msgpackr renames it, so it can never reach a prototype).
 * ./msgpack-scan.ts has already refused every body those options would not cover.
 */
import { Packr, RESERVE_START_SPACE, Unpackr } from 'msgpackr';
import { frameError, MAX_DEPTH, MSGPACK_PROTOCOL, toClientFrame, type ClientFrame, type FrameError } from './frames.js';
import { scanMsgpack } from './msgpack-scan.js';
import { finishFrame, unwrapFrame, type Deflate, type Inflate } from './wire.js';

// Defined in frames.ts, which the browser client can load without msgpackr.
export { MSGPACK_PROTOCOL };

// variableMapSize: the smallest map header (fixmap for a frame's few fields), as other
// encoders write it; the cost is one pass over an object's keys, which frames have few of.
const packr = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/**
 * msgpackr writes into a buffer it reuses, and returns a view of it; asked to, it leaves a byte
 * before the body: the flags byte. So a frame costs no allocation and no copy of its own (a
 * fresh typed array per frame cost more than packing a small frame: V8 gives each its own
 * off-heap memory).
 */
const WITH_FLAGS_BYTE = RESERVE_START_SPACE | 1;

/** One value as a MessagePack body. */
export function packValue(value: unknown): Uint8Array {
  return packr.pack(value);
}

/** A body that scanMsgpack() accepted, as a value. */
export function unpackValue(body: Uint8Array): unknown {
  return unpackr.unpack(body);
}

/**
 * `value` as a binary frame, LZ4-compressed when `deflate` is given, the body is at least
 * `threshold` bytes and that makes it smaller.
 */
export function writeFrame(value: unknown, deflate: Deflate | null = null, threshold = Infinity): Uint8Array {
  return finishFrame(packr.pack(value, WITH_FLAGS_BYTE), deflate, threshold);
}

/**
 * A binary frame from the other side as a value: flags, LZ4 (declared size checked first),
 * the scan, then msgpackr. Returns why it was refused as a string.
 */
export function readFrame(frame: Uint8Array, maxPayload: number, inflate: Inflate): Record<string, unknown> | string {
  const body = unwrapFrame(frame, maxPayload, inflate);
  if (typeof body === 'string') return body;
  const refusal = scanMsgpack(body, MAX_DEPTH);
  if (refusal !== null) return refusal;
  try {
    return unpackValue(body) as Record<string, unknown>;
  } catch {
    // The scan accepts only what msgpackr decodes; this is a guard, not a path.
    return 'MessagePack body could not be decoded';
  }
}

/** A client frame on an `ocs.v1.msgpack` connection, decoded and validated like a JSON one. */
export function decodeMsgpack(message: ArrayBuffer | Uint8Array, isBinary: boolean, maxPayload: number, inflate: Inflate): ClientFrame | FrameError {
  if (!isBinary) return frameError('E_BAD_FRAME', `text frames need the ocs.v1.json protocol; this connection speaks ${MSGPACK_PROTOCOL}`);
  const value = readFrame(message instanceof Uint8Array ? message : new Uint8Array(message), maxPayload, inflate);
  if (typeof value === 'string') return frameError('E_BAD_FRAME', value);
  return toClientFrame(value);
}

/** A group message (`msg` with `group`) as a binary frame: the form broadcast to every msgpack member. */
export function writeGroupMsg(id: string, from: string, group: string, data: unknown, pri: number, ts: number, deflate: Deflate | null, threshold: number): Uint8Array {
  return writeFrame({ op: 'msg', id, from, group, data, pri, ts }, deflate, threshold);
}

/**
 * A server frame built as JSON text (a stored message, a `batch`, a processed group message:
 * the broker keeps data as the JSON text the sender wrote) as a binary frame. The text is the
 * server's own, so it parses.
 */
export function transcodeJson(json: string, deflate: Deflate | null, threshold: number): Uint8Array {
  return writeFrame(JSON.parse(json), deflate, threshold);
}

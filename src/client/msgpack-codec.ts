/**
 * The `ocs.v1.msgpack` encoding (docs/PROTOCOL.md, "The binary form") for the client. The
 * framing (flags byte, LZ4 length, the bomb check) and the LZ4 decoder are the protocol's own
 * browser-safe modules, src/protocol/wire.ts and lz4-block.ts, shared with the server and the
 * test clients. The client adds only what src/protocol has no browser form of: an LZ4 encoder
 * (./lz4.ts) and a small MessagePack (./msgpack.ts); each says why. Loaded by the client only
 * when asked for (`encoding: 'msgpack'`), so JSON clients do not carry it.
 */
import { MAX_SERVER_FRAME_DEPTH, MSGPACK_PROTOCOL } from '../protocol/frames.js';
import { inflateJs } from '../protocol/lz4-block.js';
import { LZ4_MAX_RATIO, unwrapFrame, wrapFrame } from '../protocol/wire.js';
import type { ClientCodec } from './codec.js';
import { MAX_FRAME_HEAP_BYTES } from './heap-cost.js';
import { deflateJs } from './lz4.js';
import { decode, encode } from './msgpack.js';

/** Frames at least this large are sent compressed when that makes them smaller. */
export const COMPRESS_THRESHOLD = 1024;
/** The largest uncompressed length a frame may declare when the caller gives none (the server's highest max_payload). */
export const MAX_DECOMPRESSED = 64 * 1024 * 1024;

export function encodeFrame(frame: object, threshold = COMPRESS_THRESHOLD): Uint8Array {
  return wrapFrame(encode(frame), deflateJs, threshold);
}

/**
 * What the values of a frame may cost the heap (heap-cost.ts), per byte of the frame
 * as received: what its LZ4 block may inflate to, 256 bytes. A plain frame never gets near (64
 * per byte, all empty maps); a batch of messages compressed costs 20 to 40. Without it, 15 KB of
 * LZ4 inflated to 3.8 MB of empty maps, which took 244 MB of heap.
 */
export const VALUES_HEAP_PER_BYTE = LZ4_MAX_RATIO;

/**
 * One message from the server as a value; throws (RangeError, TypeError) on one that is not a
 * frame. A compressed one may inflate to `maxBytes` (Infinity: as much as its block can, 256x),
 * and its values cost at most VALUES_HEAP_PER_BYTE per byte received (repetitive values compressed
 * further are refused: a JSON connection carries them), and `maxHeap` in all: a plain frame may
 * be permessage-deflate's, inflated before it gets here.
 */
export function decodeFrame(data: unknown, maxBytes = MAX_DECOMPRESSED, maxHeap = MAX_FRAME_HEAP_BYTES): unknown {
  const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : data instanceof Uint8Array ? data : null;
  if (bytes === null) throw new TypeError('text message on an ocs.v1.msgpack connection');
  const body = unwrapFrame(bytes, maxBytes, inflateJs);
  if (typeof body === 'string') throw new RangeError(body);
  return decode(body, MAX_SERVER_FRAME_DEPTH, Math.min(maxHeap, bytes.byteLength * VALUES_HEAP_PER_BYTE));
}

export const msgpackCodec: ClientCodec = { protocol: MSGPACK_PROTOCOL, encode: (frame) => encodeFrame(frame), decode: (data, maxBytes, maxHeap) => decodeFrame(data, maxBytes, maxHeap) };

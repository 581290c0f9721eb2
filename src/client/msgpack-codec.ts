/**
 * The `ocs.v1.msgpack` encoding (docs/PROTOCOL.md): binary messages whose byte 0 is a flags
 * byte (bit 0: the rest is LZ4-compressed; other bits must be 0), then one MessagePack object,
 * or, compressed, a 4-byte little-endian uncompressed length and one LZ4 block. Loaded by the
 * client only when asked for (`encoding: 'msgpack'`), so JSON clients do not carry it.
 */
import { MSGPACK_PROTOCOL, type ClientCodec } from './codec.js';
import { compressBlock, decompressBlock } from './lz4.js';
import { decode, encode } from './msgpack.js';

const FLAG_LZ4 = 1;
/** Frames at least this large are sent compressed when that makes them smaller. */
export const COMPRESS_THRESHOLD = 1024;
/** The largest uncompressed length a frame may declare (the server's highest max_payload). */
export const MAX_DECOMPRESSED = 64 * 1024 * 1024;
/** As deep as the server lets a frame nest. */
const MAX_DEPTH = 64;

export function encodeFrame(frame: object, threshold = COMPRESS_THRESHOLD): Uint8Array {
  const plain = encode(frame, 1);
  plain[0] = 0;
  if (plain.length - 1 < threshold) return plain;
  const block = compressBlock(plain.subarray(1));
  if (block.length + 4 >= plain.length - 1) return plain;
  const out = new Uint8Array(5 + block.length);
  out[0] = FLAG_LZ4;
  new DataView(out.buffer).setUint32(1, plain.length - 1, true);
  out.set(block, 5);
  return out;
}

export function decodeFrame(data: unknown): unknown {
  const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : data instanceof Uint8Array ? data : null;
  if (bytes === null) throw new TypeError('text message on an ocs.v1.msgpack connection');
  if (bytes.length < 2) throw new RangeError('msgpack frame too short');
  const flags = bytes[0]!;
  if ((flags & ~FLAG_LZ4) !== 0) throw new RangeError(`reserved flag bits set: ${flags}`);
  if ((flags & FLAG_LZ4) === 0) return decode(bytes.subarray(1), MAX_DEPTH);
  if (bytes.length < 6) throw new RangeError('compressed frame too short');
  const length = new DataView(bytes.buffer, bytes.byteOffset + 1, 4).getUint32(0, true);
  // Checked before anything is allocated: a 6-byte frame may claim gigabytes.
  if (length > MAX_DECOMPRESSED) throw new RangeError(`declared length ${length} over ${MAX_DECOMPRESSED}`);
  return decode(decompressBlock(bytes.subarray(5), length), MAX_DEPTH);
}

export const msgpackCodec: ClientCodec = { protocol: MSGPACK_PROTOCOL, encode: (frame) => encodeFrame(frame), decode: decodeFrame };

/**
 * The binary frame of `ocs.v1.msgpack` around its MessagePack body (PROTOCOL.md, "The binary
 * form"): byte 0 is a flags byte; bit 0 set means the rest is a 4-byte little-endian
 * uncompressed length followed by one LZ4 block (what lz4-napi's `compress` writes), otherwise
 * the rest is the body itself. Every other flag bit is reserved and must be 0.
 *
 * Browser-safe: Uint8Array in and out, no Node.js import. The LZ4 block codec is passed in
 * (the server uses lz4-napi, src/codec/lz4.ts; a browser can use ./lz4-block.ts).
 */

export const FLAG_LZ4 = 0x01;
/** Bits a frame may not set: a frame with any of them is refused, so that they can mean something later. */
export const RESERVED_FLAGS = 0xfe;
/** Bytes of the uncompressed-length prefix of a compressed frame. */
export const LZ4_SIZE_BYTES = 4;

/**
 * Decompresses `prefixed` (the 4-byte length then the block) into exactly `size` bytes, or
 * throws. Called only once `size` has been checked against the limit.
 */
export type Inflate = (prefixed: Uint8Array, size: number) => Uint8Array;
/** Compresses `body` into the 4-byte length then one LZ4 block. */
export type Deflate = (body: Uint8Array) => Uint8Array;

/** Why a binary frame was refused, for the `err` frame's message. */
export type WireRefusal = string;

/**
 * The MessagePack body of binary frame `frame`, or why it is refused. A compressed frame whose
 * declared length is over `maxPayload`, or more than its block could inflate to, is refused
 * before anything is allocated (an LZ4 bomb: a handful of bytes may claim gigabytes; under a
 * large max_payload, 6 bytes claiming 64 MiB cost the shard 16 ms of allocation each), and one
 * whose block does not inflate to exactly the declared length is corrupt.
 */
export function unwrapFrame(frame: Uint8Array, maxPayload: number, inflate: Inflate): Uint8Array | WireRefusal {
  if (frame.byteLength === 0) return 'an empty binary frame has no flags byte';
  const flags = frame[0]!;
  if ((flags & RESERVED_FLAGS) !== 0) return `reserved flag bits set (flags byte 0x${flags.toString(16).padStart(2, '0')})`;
  if ((flags & FLAG_LZ4) === 0) return frame.subarray(1);
  if (frame.byteLength < 1 + LZ4_SIZE_BYTES) return 'a compressed frame needs a 4-byte length after its flags byte';
  const size = declaredSize(frame);
  if (size > maxPayload) return `compressed frame declares ${size} bytes, over max_payload (${maxPayload})`;
  const block = frame.byteLength - 1 - LZ4_SIZE_BYTES;
  if (size > block * LZ4_MAX_RATIO) return `compressed frame declares ${size} bytes, more than its ${block}-byte LZ4 block can inflate to`;
  let body: Uint8Array;
  try {
    body = inflate(frame.subarray(1), size);
  } catch {
    return 'corrupt LZ4 block';
  }
  if (body.byteLength !== size) return `LZ4 block inflates to ${body.byteLength} bytes, not the ${size} declared`;
  return body;
}

/** LZ4 makes at most 255 bytes of output per byte of block (a match's length bytes): more is a lie. */
export const LZ4_MAX_RATIO = 256;

/**
 * The bytes decoding binary frame `frame` handles: the length a compressed frame declares, when
 * that is within `maxPayload` (a larger claim is refused at once, see unwrapFrame) and a block
 * of its size could inflate to it, else the frame's own length. A compressed 64 KB body costs at
 * least as much to decode and re-encode as an uncompressed one, so this, not the bytes received,
 * is what a size threshold is judged on; a claim no block could meet is refused where it is
 * cheapest, inline.
 */
export function decodedBytes(frame: ArrayBuffer, maxPayload: number): number {
  const length = frame.byteLength;
  if (length < 1 + LZ4_SIZE_BYTES) return length;
  const head = new Uint8Array(frame, 0, 1 + LZ4_SIZE_BYTES);
  if (head[0] !== FLAG_LZ4) return length;
  const size = declaredSize(head);
  return size > length && size <= maxPayload && size <= (length - 1 - LZ4_SIZE_BYTES) * LZ4_MAX_RATIO ? size : length;
}

/** The uncompressed length a compressed frame declares (little-endian, unsigned). */
export function declaredSize(frame: Uint8Array): number {
  return (frame[1]! | (frame[2]! << 8) | (frame[3]! << 16)) + frame[4]! * 0x1000000;
}

/** `body` as an uncompressed frame: the flags byte 0, then the body. */
export function plainFrame(body: Uint8Array): Uint8Array {
  const frame = new Uint8Array(body.byteLength + 1);
  frame.set(body, 1);
  return frame;
}

/**
 * `body` as a frame, compressed when `deflate` is given, the body is at least `threshold`
 * bytes and compressing makes the frame smaller (text compresses; a JPEG in base64 barely does).
 */
export function wrapFrame(body: Uint8Array, deflate: Deflate | null, threshold: number): Uint8Array {
  if (deflate === null || body.byteLength < threshold) return plainFrame(body);
  return compressedFrame(body, deflate) ?? plainFrame(body);
}

/**
 * wrapFrame() for a body already written one byte into `frame` (an encoder that left room for
 * the flags byte): the uncompressed frame is `frame` itself, with no copy and no allocation.
 */
export function finishFrame(frame: Uint8Array, deflate: Deflate | null, threshold: number): Uint8Array {
  frame[0] = 0;
  if (deflate === null || frame.byteLength - 1 < threshold) return frame;
  return compressedFrame(frame.subarray(1), deflate) ?? frame;
}

/** `body` as a compressed frame, or null when compressing does not make it smaller. */
function compressedFrame(body: Uint8Array, deflate: Deflate): Uint8Array | null {
  const prefixed = deflate(body);
  if (prefixed.byteLength >= body.byteLength) return null;
  const frame = new Uint8Array(prefixed.byteLength + 1);
  frame[0] = FLAG_LZ4;
  frame.set(prefixed, 1);
  return frame;
}

/** Whether `frame` (a binary frame) is LZ4-compressed. */
export function isCompressed(frame: Uint8Array): boolean {
  return frame.byteLength > 0 && (frame[0]! & FLAG_LZ4) !== 0;
}

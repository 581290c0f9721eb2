/**
 * The sending half of the raw WebSocket client: masked client frames (RFC 6455 5.3), written
 * straight into the buffer that goes to the socket.
 */
import { randomFillSync } from 'node:crypto';

/**
 * Mask keys and handshake keys come from a pool refilled by one randomFillSync call per
 * 4 KiB: a CSPRNG call per frame would cost more than the frame. RFC 6455 asks for
 * unpredictable keys to defeat proxy cache poisoning; this keeps them CSPRNG-derived.
 */
const RANDOM_POOL = Buffer.allocUnsafe(4096);
let randomOffset = RANDOM_POOL.length;

/** A fresh Sec-WebSocket-Key: 16 random bytes, base64. */
export function handshakeKey(): string {
  const at = takeRandom(16);
  return RANDOM_POOL.toString('base64', at, at + 16);
}

function takeRandom(bytes: number): number {
  if (randomOffset + bytes > RANDOM_POOL.length) {
    randomFillSync(RANDOM_POOL);
    randomOffset = 0;
  }
  const at = randomOffset;
  randomOffset += bytes;
  return at;
}

export function headerLength(payloadLength: number): number {
  // Client frames are always masked, so every header carries 4 mask bytes.
  if (payloadLength < 126) return 6;
  if (payloadLength < 65536) return 8;
  return 14;
}

/**
 * Writes a masked frame header at `at` and returns the payload offset. The payload is then
 * written at that offset and masked in place with maskPayload().
 */
export function writeHeader(out: Buffer, at: number, opcode: number, payloadLength: number): number {
  out[at] = 0x80 | opcode; // FIN + opcode
  if (payloadLength < 126) {
    out[at + 1] = 0x80 | payloadLength;
    at += 2;
  } else if (payloadLength < 65536) {
    out[at + 1] = 0x80 | 126;
    out[at + 2] = payloadLength >>> 8;
    out[at + 3] = payloadLength & 0xff;
    at += 4;
  } else {
    out[at + 1] = 0x80 | 127;
    // 2^53 is far beyond any frame we build; the high word is at most 21 bits.
    out.writeUInt32BE(Math.floor(payloadLength / 0x100000000), at + 2);
    out.writeUInt32BE(payloadLength >>> 0, at + 6);
    at += 10;
  }
  const keyAt = takeRandom(4);
  out[at] = RANDOM_POOL[keyAt]!;
  out[at + 1] = RANDOM_POOL[keyAt + 1]!;
  out[at + 2] = RANDOM_POOL[keyAt + 2]!;
  out[at + 3] = RANDOM_POOL[keyAt + 3]!;
  return at + 4;
}

/** XORs `length` bytes at `start` with the 4-byte key that sits just before them. */
export function maskPayload(out: Buffer, start: number, length: number): void {
  const k0 = out[start - 4]!;
  const k1 = out[start - 3]!;
  const k2 = out[start - 2]!;
  const k3 = out[start - 1]!;
  const end = start + length;
  const end4 = start + (length & ~3);
  let i = start;
  for (; i < end4; i += 4) {
    out[i] = out[i]! ^ k0;
    out[i + 1] = out[i + 1]! ^ k1;
    out[i + 2] = out[i + 2]! ^ k2;
    out[i + 3] = out[i + 3]! ^ k3;
  }
  if (i < end) out[i] = out[i]! ^ k0;
  if (i + 1 < end) out[i + 1] = out[i + 1]! ^ k1;
  if (i + 2 < end) out[i + 2] = out[i + 2]! ^ k2;
}

export function encodeFrame(opcode: number, payload: string | Buffer): Buffer {
  const length = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  const out = Buffer.allocUnsafe(headerLength(length) + length);
  const start = writeHeader(out, 0, opcode, length);
  if (typeof payload === 'string') out.write(payload, start);
  else payload.copy(out, start);
  maskPayload(out, start, length);
  return out;
}

export function encodeClosePayload(code: number, reason: string): Buffer {
  const payload = Buffer.allocUnsafe(2 + Buffer.byteLength(reason));
  payload.writeUInt16BE(code, 0);
  payload.write(reason, 2);
  return payload;
}

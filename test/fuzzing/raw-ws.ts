/**
 * WebSocket traffic a well-behaved client never sends, for the fuzzer: frames built byte by
 * byte (any opcode, RSV bits, FIN, masking, a declared length that lies), written on the
 * socket of a connection that tools/wsclient opened. The handshake and the reading of the
 * server's frames stay with that client; only the malformed writing lives here.
 */
import { Socket } from 'node:net';
import type { WsClient } from '../../tools/wsclient/client.js';

export interface RawFrame {
  fin: boolean;
  /** The three RSV bits (RSV1 = 4); non-zero without a negotiated extension is a protocol error. */
  rsv: number;
  opcode: number;
  /** Client frames must be masked; an unmasked one is a protocol error. */
  masked: boolean;
  payload: Uint8Array;
  /** How the length is written: the shortest form, or a longer one (non-minimal), or a 64-bit value with the top bit set. */
  lengthForm: 'minimal' | 'wide16' | 'wide64' | 'top-bit';
  /** Added to the real payload length in the header: a lie the server must survive. */
  lengthDelta: number;
}

export const Opcode = { CONTINUATION: 0, TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 } as const;

export function frame(opcode: number, payload: Uint8Array | string, fin = true): RawFrame {
  const bytes = typeof payload === 'string' ? Buffer.from(payload) : payload;
  return { fin, rsv: 0, opcode, masked: true, payload: bytes, lengthForm: 'minimal', lengthDelta: 0 };
}

export function encodeRawFrame(f: RawFrame): Buffer {
  const declared = Math.max(0, f.payload.length + f.lengthDelta);
  const head: number[] = [(f.fin ? 0x80 : 0) | ((f.rsv & 7) << 4) | (f.opcode & 0x0f)];
  const maskBit = f.masked ? 0x80 : 0;
  let form = f.lengthForm;
  if (form === 'minimal') form = declared < 126 ? 'minimal' : declared < 65536 ? 'wide16' : 'wide64';
  if (form === 'minimal') head.push(maskBit | declared);
  else if (form === 'wide16') head.push(maskBit | 126, (declared >>> 8) & 0xff, declared & 0xff);
  else {
    const high = form === 'top-bit' ? 0x80000000 : Math.floor(declared / 0x100000000);
    head.push(maskBit | 127, (high >>> 24) & 0xff, (high >>> 16) & 0xff, (high >>> 8) & 0xff, high & 0xff);
    head.push((declared >>> 24) & 0xff, (declared >>> 16) & 0xff, (declared >>> 8) & 0xff, declared & 0xff);
  }
  const payload = Buffer.from(f.payload);
  if (!f.masked) return Buffer.concat([Buffer.from(head), payload]);
  // A fixed key: unpredictability only matters against proxies, and fixed keys keep a run replayable.
  const key = [0x37, 0xfa, 0x21, 0x3d];
  for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i & 3]!;
  return Buffer.concat([Buffer.from(head), Buffer.from(key), payload]);
}

/**
 * The TCP socket under a tools/wsclient connection. The client has no public raw write (a
 * well-behaved client needs none), so the fuzzer reaches for its private field, and fails
 * loudly should that field ever change.
 */
export function socketOf(client: WsClient): Socket {
  const socket = (client as unknown as { socket?: unknown }).socket;
  if (!(socket instanceof Socket)) throw new Error('tools/wsclient no longer keeps its socket in `socket`: update test/fuzzing/raw-ws.ts');
  return socket;
}

/** Writes `frames` in one TCP write, as they are. */
export function writeRaw(client: WsClient, frames: readonly RawFrame[]): void {
  if (!client.isOpen) return;
  socketOf(client).write(Buffer.concat(frames.map(encodeRawFrame)));
}

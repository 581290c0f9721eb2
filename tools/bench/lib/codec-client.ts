// A client of the codec benchmark in one of the four encodings it compares, on the `ws`
// package (the one client here that negotiates permessage-deflate): it counts the bytes its
// socket really reads and writes, and speaks ocs.v1.msgpack through src/protocol, as any
// client of the server would.
import type { Socket } from 'node:net';
import WebSocket from 'ws';
import { deflateLz4, inflateLz4 } from '../../../src/codec/lz4.js';
import { MSGPACK_PROTOCOL, readFrame, writeFrame } from '../../../src/protocol/msgpack-codec.js';

/** msgpack+lz4hc: msgpack+lz4 against a server that uses LZ4 high compression for every group message (lz4_hc_min_recipients 1). */
export const ENCODINGS = ['json', 'json+deflate', 'msgpack', 'msgpack+lz4', 'msgpack+lz4hc'] as const;
export type Encoding = (typeof ENCODINGS)[number];

export const isBinary = (encoding: Encoding): boolean => encoding.startsWith('msgpack');
/** Whether the server under test needs performance.enable_compression for this encoding. */
export const needsCompression = (encoding: Encoding): boolean => encoding.includes('+');
/** The server's performance settings an encoding is measured with (one server per distinct value). */
export const serverPerformance = (encoding: Encoding): { enable_compression: boolean; lz4_hc_min_recipients: number } => ({
  enable_compression: needsCompression(encoding),
  lz4_hc_min_recipients: encoding === 'msgpack+lz4hc' ? 1 : 0,
});
/** A msgpack+lz4 client compresses what it sends from here on, as the server does. */
const CLIENT_LZ4_FROM = 1024;

export type Frame = Record<string, unknown> & { op: string };

export interface BenchClient {
  readonly user: string;
  send(frame: unknown): void;
  /** TCP payload bytes read and written so far (WebSocket framing and all). */
  bytesRead(): number;
  bytesWritten(): number;
  /** Resolves with the first frame `match` accepts from now on. */
  next(match: (frame: Frame) => boolean, timeoutMs?: number): Promise<Frame>;
  close(): void;
}

export interface ClientOptions {
  port: number;
  user: string;
  encoding: Encoding;
  /** Every `msg` (also those inside a `batch`), as decoded. */
  onMsg?(msg: Frame): void;
  /**
   * Frames of at least this many bytes are counted as one `msg` each (onMsg gets `{op: 'msg'}`)
   * without being decoded: a member that only counts large messages leaves the generator's CPU
   * to the clients being measured. Default: every frame is decoded.
   */
  countOnlyFrom?: number;
}

export function openClient(options: ClientOptions): Promise<BenchClient> {
  const { encoding } = options;
  const binary = isBinary(encoding);
  const ws = new WebSocket(`ws://127.0.0.1:${options.port}/ws?user=${encodeURIComponent(options.user)}`, binary ? [MSGPACK_PROTOCOL] : [], {
    perMessageDeflate: encoding === 'json+deflate',
  });
  let waiters: Array<(frame: Frame) => boolean> = [];
  const countOnlyFrom = options.countOnlyFrom ?? Infinity;
  ws.on('message', (data: Buffer, isBinaryFrame: boolean) => {
    if (data.byteLength >= countOnlyFrom) return options.onMsg?.({ op: 'msg' });
    let frame: Frame;
    if (isBinaryFrame) {
      const value = readFrame(data, 1 << 30, inflateLz4);
      if (typeof value === 'string') throw new Error(`bad binary frame from the server: ${value}`);
      frame = value as Frame;
    } else {
      frame = JSON.parse(data.toString()) as Frame;
    }
    if (frame.op === 'msg') options.onMsg?.(frame);
    else if (frame.op === 'batch') for (const m of frame.msgs as Frame[]) options.onMsg?.(m);
    if (waiters.length > 0) waiters = waiters.filter((waiter) => !waiter(frame));
  });
  const socket = (): Socket | undefined => (ws as unknown as { _socket?: Socket })._socket;
  const client: BenchClient = {
    user: options.user,
    send: (frame) => ws.send(binary ? writeFrame(frame, encoding.startsWith('msgpack+lz4') ? deflateLz4 : null, CLIENT_LZ4_FROM) : JSON.stringify(frame)),
    bytesRead: () => socket()?.bytesRead ?? 0,
    bytesWritten: () => socket()?.bytesWritten ?? 0,
    next: (match, timeoutMs = 10_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${options.user}: no matching frame within ${timeoutMs} ms`)), timeoutMs);
        waiters.push((frame) => {
          if (!match(frame)) return false;
          clearTimeout(timer);
          resolve(frame);
          return true;
        });
      }),
    close: () => ws.close(),
  };
  const welcomed = client.next((f) => f.op === 'welcome');
  return new Promise((resolve, reject) => {
    ws.once('error', reject);
    welcomed.then(() => resolve(client), reject);
  });
}

/** Joins `group` and waits for the answer. */
export async function join(client: BenchClient, group: string): Promise<void> {
  const answer = client.next((f) => (f.op === 'joined' && f.group === group) || f.op === 'err');
  client.send({ op: 'join', group });
  const frame = await answer;
  if (frame.op === 'err') throw new Error(`${client.user} could not join ${group}: ${String(frame.message)}`);
}

/**
 * A real WebSocket client (the `ws` package) that queues every frame it receives, so a test
 * can wait for the frame it expects: `await client.next((f) => f.op === 'joined')`. With
 * `encoding: 'msgpack'` it speaks ocs.v1.msgpack through src/protocol, as any client would.
 */
import { request } from 'node:http';
import WebSocket from 'ws';
import { deflateLz4, inflateLz4 } from '../../src/codec/lz4.js';
import { MSGPACK_PROTOCOL, readFrame, writeFrame } from '../../src/protocol/msgpack-codec.js';
import { isCompressed } from '../../src/protocol/wire.js';

export type Frame = Record<string, unknown> & { op: string };

/** How a frame arrived: its WebSocket type, whether LZ4-compressed, its bytes on the wire. */
export interface Arrival {
  op: string;
  /** The frame's `id` (a msg's), if any. */
  id: unknown;
  binary: boolean;
  compressed: boolean;
  bytes: number;
}

export interface TestClient {
  ws: WebSocket;
  frames: Frame[];
  /** Every frame received, in order, as it came (binary or not, compressed or not). */
  arrivals: Arrival[];
  /** In the connection's encoding; a msgpack client compresses frames of at least `compressFrom` bytes. */
  send(frame: unknown): void;
  sendRaw(data: string | Buffer): void;
  /** The first received frame (oldest first, consumed) matching `match`. */
  next(match?: (frame: Frame) => boolean, timeoutMs?: number): Promise<Frame>;
  closed: Promise<{ code: number; reason: string }>;
  close(): void;
}

export interface ConnectOptions {
  query?: string;
  protocols?: string[];
  autoPong?: boolean;
  path?: string;
  /** msgpack: offer ocs.v1.msgpack (unless `protocols` says otherwise) and speak it. */
  encoding?: 'json' | 'msgpack';
  /** msgpack: LZ4-compress frames whose body is at least this many bytes (default: never). */
  compressFrom?: number;
  /** wss://, trusting this certificate (a TLS server's self-signed one). */
  ca?: Buffer;
  /** Extra headers of the upgrade request (X-Forwarded-For, as a proxy sends it). */
  headers?: Record<string, string>;
  /** The connection's own address, as another host would have (127.0.0.2: any 127.x address is loopback). */
  localAddress?: string;
}

/**
 * Frames received so far, oldest first, and the waits for one of them: `next` takes (removes)
 * the first frame matching, waiting for it until `timeoutMs` or until `isClosed()` holds.
 */
export class FrameQueue {
  readonly frames: Frame[] = [];
  private waiters: Array<() => void> = [];

  /** `howClosed`: the close code and reason, for the error of a wait the close ended. */
  constructor(
    private readonly isClosed: () => boolean,
    private readonly howClosed: () => string = () => '',
  ) {}

  push(frame: Frame): void {
    this.frames.push(frame);
    this.wake();
  }

  /** Lets every waiter look again (a frame arrived, or the connection closed). */
  wake(): void {
    const current = this.waiters;
    this.waiters = [];
    for (const wake of current) wake();
  }

  next(match: (frame: Frame) => boolean = () => true, timeoutMs = 5000): Promise<Frame> {
    const { frames } = this;
    return new Promise<Frame>((resolve, reject) => {
      // A wait that timed out must not take a frame that arrives later: a later wait may want it.
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        reject(new Error(`no matching frame within ${timeoutMs} ms; got ${JSON.stringify(frames).slice(0, 500)}`));
      }, timeoutMs);
      const check = (): void => {
        if (timedOut) return;
        const index = frames.findIndex(match);
        if (index >= 0) {
          clearTimeout(timer);
          resolve(frames.splice(index, 1)[0]!);
        } else if (this.isClosed()) {
          clearTimeout(timer);
          reject(new Error(`connection closed${this.howClosed()} before a matching frame; got ${JSON.stringify(frames).slice(0, 500)}`));
        } else {
          this.waiters.push(check);
        }
      };
      check();
    });
  }
}

export function connect(port: number, options: ConnectOptions = {}): Promise<TestClient> {
  const url = `${options.ca ? 'wss' : 'ws'}://127.0.0.1:${port}${options.path ?? '/ws'}${options.query ? `?${options.query}` : ''}`;
  const msgpack = options.encoding === 'msgpack';
  const ws = new WebSocket(url, options.protocols ?? (msgpack ? [MSGPACK_PROTOCOL] : []), { autoPong: options.autoPong ?? true, ...(options.ca ? { ca: options.ca } : {}), ...(options.headers ? { headers: options.headers } : {}), ...(options.localAddress ? { localAddress: options.localAddress } : {}) });
  let closedWith = '';
  const queue = new FrameQueue(
    () => ws.readyState === WebSocket.CLOSED,
    () => closedWith,
  );
  const arrivals: Arrival[] = [];
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    let frame: Frame;
    if (isBinary) {
      const value = readFrame(data, 64 * 1024 * 1024, inflateLz4);
      if (typeof value === 'string') throw new Error(`the server sent a bad binary frame: ${value}`);
      frame = value as Frame;
    } else {
      frame = JSON.parse(data.toString()) as Frame;
    }
    arrivals.push({ op: frame.op, id: frame.id, binary: isBinary, compressed: isBinary && isCompressed(data), bytes: data.byteLength });
    queue.push(frame);
  });
  // ws reports a frame it refuses (bad UTF-8, a reserved bit) as an error, then a 1006 close.
  let failedWith = '';
  ws.on('error', (err) => (failedWith = `; the client failed the connection: ${err.message}`));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.once('close', (code, reason) => {
      closedWith = ` (${code} ${JSON.stringify(reason.toString())}${failedWith})`;
      resolve({ code, reason: reason.toString() });
      queue.wake();
    });
  });
  const client: TestClient = {
    ws,
    frames: queue.frames,
    arrivals,
    closed,
    send: (frame) => ws.send(msgpack ? writeFrame(frame, deflateLz4, options.compressFrom ?? Infinity) : JSON.stringify(frame)),
    sendRaw: (data) => ws.send(data),
    close: () => ws.close(),
    next: (match, timeoutMs) => queue.next(match, timeoutMs),
  };
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(client));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => reject(Object.assign(new Error(`HTTP ${res.statusCode}: ${body}`), { status: res.statusCode, body })));
    });
    ws.once('error', reject);
  });
}

/** Connects as `user` (anonymous mode), waits for `welcome` and joins `groups`. */
export async function member(port: number, user: string, groups: string[] = [], options: Pick<ConnectOptions, 'encoding' | 'compressFrom' | 'ca' | 'localAddress'> = {}): Promise<TestClient & { welcome: Frame }> {
  const client = await connect(port, { query: `user=${encodeURIComponent(user)}`, ...options });
  const welcome = await client.next((f) => f.op === 'welcome');
  for (const group of groups) {
    client.send({ op: 'join', group, ref: `join-${group}` });
    await client.next((f) => f.op === 'joined' && f.group === group);
  }
  return Object.assign(client, { welcome });
}

/**
 * An HTTP request answered with JSON, on a fresh connection closed after the answer (node:http
 * without an agent): fetch's keep-alive sockets would hold the server's shutdown for seconds.
 */
export async function getJson(port: number, path: string, method = 'GET', token?: string, extraHeaders: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const { status, text } = await getText(port, path, method, token, extraHeaders);
  return { status, body: JSON.parse(text) as Record<string, unknown> };
}

/** An HTTP request as getJson makes it, answered with the body as text and its content type. */
export function getText(port: number, path: string, method = 'GET', token?: string, extraHeaders: Record<string, string> = {}): Promise<{ status: number; text: string; contentType: string }> {
  return new Promise((resolve, reject) => {
    const headers = { ...(token ? { authorization: `Bearer ${token}` } : {}), ...extraHeaders };
    const req = request({ host: '127.0.0.1', port, method, path, agent: false, headers }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text, contentType: res.headers['content-type'] ?? '' }));
    });
    req.once('error', reject);
    req.end();
  });
}

/** Connects members of `group` until every one of `shards` shards holds at least one (the kernel picks the shard). */
export async function membersOnEveryShard(port: number, shards: number, group: string, prefix = 'user'): Promise<Array<TestClient & { welcome: Frame }>> {
  const clients = [];
  const seen = new Set<number>();
  for (let i = 0; i < 40 && seen.size < shards; i++) {
    const client = await member(port, `${prefix}${i}`, [group]);
    seen.add(client.welcome.shard as number);
    clients.push(client);
  }
  if (seen.size < shards) throw new Error(`expected members on ${shards} shards, got shards ${[...seen]}`);
  return clients;
}

/**
 * Opens connections with `open` until one lands on shard `shard` (the kernel picks the shard
 * of each connection); the others are closed.
 */
export async function onShard<T extends TestClient & { welcome: Frame }>(shard: number, open: (attempt: number) => Promise<T>, attempts = 60): Promise<T> {
  for (let attempt = 0; attempt < attempts; attempt++) {
    const client = await open(attempt);
    if (client.welcome.shard === shard) return client;
    client.close();
  }
  throw new Error(`no connection landed on shard ${shard} in ${attempts} attempts`);
}

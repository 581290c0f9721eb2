/**
 * A lean WebSocket client (RFC 6455) on a raw `node:net` socket, for the load generator and
 * the load-testing suite, so that the load generator is never the bottleneck. It reads into one
 * shared buffer through `net`'s `onread` option (no per-read Buffer, no Readable-stream
 * machinery) and hands out payloads as views. `npm run bench:wsclient` measures it against
 * `ws` on one core: with 200 connections and full reads, 7.8M msgs/s counted (ws 2.1M), and
 * 2.0M/s with the broadcast parser (ws 1.0M). With 2000 connections at one frame per read,
 * 170k/s (ws 140k/s); there the kernel's per-read TCP work takes most of the core.
 *
 * The frame parser (frame-parser.ts), the encoder (frame-encoder.ts) and the handshake
 * (handshake.ts) are modules of their own, without sockets; this one holds the connection:
 * reads, writes, closing.
 *
 * API (stable; other modules import it from `tools/wsclient/client.js`):
 *
 *   const ws = connectWs({
 *     host, port, path,            // path includes the query string, e.g. '/ws?user=u1'
 *     protocols?: string[],        // offered as Sec-WebSocket-Protocol
 *     headers?: Record<string, string>,  // extra request headers
 *     maxPayload?: number,         // largest accepted message in bytes (default 64 MiB)
 *     handshakeTimeoutMs?: number, // default 10 000; 0 disables
 *     copyPayloads?: boolean,      // default false, see "Payload lifetime"
 *     tls?: { ca?: Buffer },       // wss://: TLS, trusting `ca` too (node:tls, same read path)
 *     onOpen?(), onMessage(payload, isBinary), onClose?(code, reason),
 *     onError?(err), onPong?(payload),
 *   });
 *   ws.send(data: string | Buffer): boolean   // text frame for a string, binary for a Buffer
 *   ws.sendMany(texts: string[]): boolean     // many text frames in one socket write
 *   ws.ping(payload?: string | Buffer): boolean   // RangeError over 125 bytes
 *   ws.close(code = 1000, reason = '')        // close handshake; onClose follows. RangeError
 *                                             // for a reserved code or a reason over 123 bytes
 *   ws.destroy()                              // drop the TCP connection now; onClose(1006)
 *   ws.protocol        negotiated Sec-WebSocket-Protocol ('' when none)
 *   ws.connectedAt     performance.now() when the 101 response arrived (NaN before)
 *   ws.openMs          ms from connectWs() to the 101 response (NaN before)
 *   ws.isOpen          true between onOpen and the start of closing
 *   ws.bufferedAmount  bytes queued in the socket, not yet handed to the kernel
 *
 * Callbacks:
 * - onOpen: once, after a valid 101 (status, Upgrade, Connection, Sec-WebSocket-Accept and
 *   the protocol checked).
 * - onMessage: once per complete message; fragmented messages are reassembled. Text payloads
 *   are not UTF-8-validated (decode them yourself; it would cost every receiver a pass).
 * - onError: connection errors, protocol violations, and a refused upgrade. A non-101 status
 *   gives a WsHandshakeError. Its message holds the status and its `httpStatus` property is
 *   the status code.
 * - onClose: exactly once per client, always last, also when the client never opened. `code`
 *   is the close frame's code (1005 when the frame had none), 1006 when the TCP connection
 *   ended without a close frame (refused upgrade, network error, destroy()).
 *
 * Payload lifetime: by default a payload is a view into a read buffer that the next socket
 * read (of any client) overwrites, so it is valid only until onMessage/onPong returns, like
 * uWS's ArrayBuffers. Copy it (`Buffer.from(payload)`) to keep it, or pass
 * `copyPayloads: true` to receive owned copies.
 *
 * send() before onOpen throws (a programming error); after closing has begun it sends nothing
 * and returns false (racing the server's close is normal). Otherwise it returns what
 * `socket.write` returns: false means the socket's buffer is over its high-water mark.
 */
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { performance } from 'node:perf_hooks';
import { encodeClosePayload, encodeFrame, handshakeKey, headerLength, maskPayload, writeHeader } from './frame-encoder.js';
import { FrameParser, type FrameSink } from './frame-parser.js';
import { readHandshake, requestHead } from './handshake.js';
import {
  CLOSE_ABNORMAL,
  CLOSE_NO_STATUS,
  CLOSE_NORMAL,
  MAX_CONTROL_PAYLOAD,
  OP_BINARY,
  OP_CLOSE,
  OP_PING,
  OP_PONG,
  OP_TEXT,
} from './rfc6455.js';

export interface WsClientOptions {
  host: string;
  port: number;
  /** Request target including the query string, e.g. `/ws?user=u1`. */
  path: string;
  protocols?: string[];
  headers?: Record<string, string>;
  maxPayload?: number;
  handshakeTimeoutMs?: number;
  copyPayloads?: boolean;
  /** wss://: TLS to the server, trusting `ca` (a self-signed certificate) besides the usual roots. */
  tls?: { ca?: Buffer };
  onOpen?(): void;
  onMessage(payload: Buffer, isBinary: boolean): void;
  onClose?(code: number, reason: string): void;
  onError?(err: Error): void;
  onPong?(payload: Buffer): void;
}

export interface WsClient {
  send(data: string | Buffer): boolean;
  sendMany(texts: string[]): boolean;
  ping(payload?: string | Buffer): boolean;
  close(code?: number, reason?: string): void;
  destroy(): void;
  readonly protocol: string;
  readonly connectedAt: number;
  readonly openMs: number;
  readonly isOpen: boolean;
  readonly bufferedAmount: number;
}

export { WsHandshakeError } from './handshake.js';

export function connectWs(opts: WsClientOptions): WsClient {
  return new Connection(opts);
}

// ---------------------------------------------------------------------------------------
// Constants

const DEFAULT_MAX_PAYLOAD = 64 * 1024 * 1024;
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
/** How long we wait for the server to end TCP after the close handshake before destroying. */
const CLOSE_TIMEOUT_MS = 3_000;

const enum State {
  Connecting,
  Open,
  Closing,
  Closed,
}

// ---------------------------------------------------------------------------------------
// The shared read buffer

/**
 * Every socket reads into this one buffer: reads are delivered synchronously, one at a time,
 * and everything that outlives a read (partial headers, partial payloads, fragments) is
 * copied out, so sharing it is safe and saves a 64 KiB allocation per read.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

// ---------------------------------------------------------------------------------------
// Connection

class Connection implements WsClient {
  protocol = '';
  connectedAt = Number.NaN;
  openMs = Number.NaN;

  private readonly opts: WsClientOptions;
  private readonly socket: Socket;
  private readonly startedAt = performance.now();
  private readonly key: string;
  private state = State.Connecting;

  // Handshake: the response head is accumulated here until the blank line.
  private responseHead: Buffer | null = Buffer.alloc(0);

  // Frames are parsed by a parser of their own (frame-parser.ts); this connection is its sink.
  private readonly parser: FrameParser;

  private closeSent = false;
  private closeCode = CLOSE_ABNORMAL;
  private closeReason = '';
  private closeReported = false;
  private closeTimer: NodeJS.Timeout | null = null;

  constructor(opts: WsClientOptions) {
    this.opts = opts;
    this.key = handshakeKey();
    this.parser = new FrameParser(this.frameSink(), opts.maxPayload ?? DEFAULT_MAX_PAYLOAD);
    const onread = { buffer: READ_BUFFER, callback: (n: number) => this.onRead(n) };
    // node:tls takes onread as net does (a TLSSocket is a net.Socket); @types/node omits it.
    const socket = opts.tls ? tlsConnect({ host: opts.host, port: opts.port, ca: opts.tls.ca, onread } as ConnectionOptions) : connect({ host: opts.host, port: opts.port, onread });
    this.socket = socket;
    socket.setNoDelay(true);
    const handshakeTimeout = opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    if (handshakeTimeout > 0) {
      socket.setTimeout(handshakeTimeout, () => {
        this.fail(new Error(`WebSocket handshake timed out after ${handshakeTimeout} ms`));
      });
    }
    socket.on(opts.tls ? 'secureConnect' : 'connect', () => socket.write(requestHead(opts, this.key)));
    socket.on('error', (err) => this.reportError(err));
    socket.on('close', () => this.onSocketClose());
  }

  get isOpen(): boolean {
    return this.state === State.Open;
  }

  get bufferedAmount(): number {
    return this.socket.writableLength;
  }

  send(data: string | Buffer): boolean {
    if (!this.canSend()) return false;
    return this.socket.write(encodeFrame(typeof data === 'string' ? OP_TEXT : OP_BINARY, data));
  }

  sendMany(texts: string[]): boolean {
    if (!this.canSend()) return false;
    let total = 0;
    const lengths = new Array<number>(texts.length);
    for (let i = 0; i < texts.length; i++) {
      const length = Buffer.byteLength(texts[i]!);
      lengths[i] = length;
      total += headerLength(length) + length;
    }
    const out = Buffer.allocUnsafe(total);
    let at = 0;
    for (let i = 0; i < texts.length; i++) {
      const length = lengths[i]!;
      const start = writeHeader(out, at, OP_TEXT, length);
      out.write(texts[i]!, start);
      maskPayload(out, start, length);
      at = start + length;
    }
    return this.socket.write(out);
  }

  ping(payload: string | Buffer = ''): boolean {
    const length = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
    if (length > MAX_CONTROL_PAYLOAD) throw new RangeError(`ping payload is ${length} bytes; the limit is ${MAX_CONTROL_PAYLOAD}`);
    if (!this.canSend()) return false;
    return this.socket.write(encodeFrame(OP_PING, payload));
  }

  close(code = CLOSE_NORMAL, reason = ''): void {
    if (!isSendableCloseCode(code)) throw new RangeError(`close code ${code} may not be sent (RFC 6455 7.4)`);
    if (2 + Buffer.byteLength(reason) > MAX_CONTROL_PAYLOAD) throw new RangeError('close reason longer than 123 bytes');
    if (this.state === State.Connecting) {
      // No handshake to close yet: give up on the connection.
      this.closeCode = CLOSE_ABNORMAL;
      this.destroy();
      return;
    }
    if (this.state !== State.Open) return;
    this.state = State.Closing;
    this.sendClose(code, reason);
    this.armCloseTimer();
  }

  destroy(): void {
    if (this.state === State.Closed) return;
    this.state = State.Closing;
    this.socket.destroy();
  }

  // -------------------------------------------------------------------------------------
  // Handshake (handshake.ts)

  /** Returns the offset in `data` where frames begin, or -1 when the head is incomplete or bad. */
  private onHandshakeData(data: Buffer): number {
    const step = readHandshake(this.responseHead!, data, this.key, this.opts.protocols ?? []);
    if (step.kind === 'incomplete') {
      this.responseHead = step.head;
      return -1;
    }
    if (step.kind === 'failed') {
      this.fail(step.error);
      return -1;
    }
    this.responseHead = null;
    this.protocol = step.protocol;
    this.connectedAt = performance.now();
    this.openMs = this.connectedAt - this.startedAt;
    this.state = State.Open;
    this.socket.setTimeout(0);
    return step.frameOffset;
  }

  // -------------------------------------------------------------------------------------
  // Reading

  private onRead(nread: number): boolean {
    let offset = 0;
    const data = READ_BUFFER;
    if (this.state === State.Connecting) {
      offset = this.onHandshakeData(data.subarray(0, nread));
      if (offset < 0) return true;
      this.opts.onOpen?.();
    }
    if (this.state === State.Closed) return false;
    this.parser.push(data, offset, nread);
    return true;
  }

  /** What the parser reports, turned into callbacks, pongs and the close handshake. */
  private frameSink(): FrameSink {
    const copy = this.opts.copyPayloads === true;
    return {
      onMessage: (payload, isBinary, owned) => {
        // Messages that arrive after we started closing are still delivered: the server sent
        // them before it saw our close, and a load generator must count them.
        if (this.state === State.Closed) return;
        this.opts.onMessage(owned || !copy ? payload : Buffer.from(payload), isBinary);
      },
      onPing: (payload) => {
        if (this.state === State.Open) this.socket.write(encodeFrame(OP_PONG, payload));
      },
      onPong: (payload, owned) => this.opts.onPong?.(owned || !copy ? payload : Buffer.from(payload)),
      onClose: (code, reason) => this.onCloseFrame(code, reason),
      onProtocolError: (code, problem) => this.protocolError(code, problem),
    };
  }

  private onCloseFrame(code: number, reason: string): void {
    this.closeCode = code;
    this.closeReason = reason;
    if (this.state === State.Open) this.state = State.Closing;
    // Echo the code back (RFC 6455 5.5.1), then half-close; the server closes TCP first.
    if (!this.closeSent) {
      this.closeSent = true;
      this.socket.write(encodeFrame(OP_CLOSE, code === CLOSE_NO_STATUS ? Buffer.alloc(0) : encodeClosePayload(code, '')));
    }
    this.socket.end();
    this.armCloseTimer();
  }

  // -------------------------------------------------------------------------------------
  // Closing and errors

  private canSend(): boolean {
    if (this.state === State.Open) return true;
    if (this.state === State.Connecting) throw new Error('WebSocket is not open yet: wait for onOpen');
    return false;
  }

  private sendClose(code: number, reason: string): void {
    if (this.closeSent) return;
    this.closeSent = true;
    this.socket.write(encodeFrame(OP_CLOSE, encodeClosePayload(code, reason)));
  }

  private armCloseTimer(): void {
    if (this.closeTimer !== null) return;
    this.closeTimer = setTimeout(() => this.socket.destroy(), CLOSE_TIMEOUT_MS);
    this.closeTimer.unref();
  }

  private protocolError(code: number, problem: string): void {
    this.reportError(new Error(`WebSocket protocol error: ${problem}`));
    if (this.state === State.Open || this.state === State.Closing) this.sendClose(code, '');
    this.closeCode = code;
    this.closeReason = problem;
    this.state = State.Closed;
    this.socket.end();
    this.armCloseTimer();
  }

  /** Fails the connection before it opened: report and drop TCP; onClose(1006) follows. */
  private fail(err: Error): void {
    this.reportError(err);
    this.responseHead = null;
    this.state = State.Closed;
    this.socket.destroy();
  }

  private reportError(err: Error): void {
    this.opts.onError?.(err);
  }

  private onSocketClose(): void {
    this.state = State.Closed;
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    if (this.closeReported) return;
    this.closeReported = true;
    this.opts.onClose?.(this.closeCode, this.closeReason);
  }
}

/** Codes an endpoint may put in a close frame: not 1004-1006 or 1015, which are reserved. */
function isSendableCloseCode(code: number): boolean {
  return (
    Number.isInteger(code) &&
    ((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999))
  );
}

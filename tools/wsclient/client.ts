/**
 * A lean WebSocket client (RFC 6455) on a raw `node:net` socket, for the load generator and
 * the load-testing suite, so that the load generator is never the bottleneck. It reads into one
 * shared buffer through `net`'s `onread` option (no per-read Buffer, no Readable-stream
 * machinery) and hands out payloads as views. `npm run bench:wsclient` measures it against
 * `ws` on one core: with 200 connections and full reads, 7.8M msgs/s counted (ws 2.1M), and
 * 2.0M/s with the broadcast parser (ws 1.0M). With 2000 connections at one frame per read,
 * 170k/s (ws 140k/s); there the kernel's per-read TCP work takes most of the core.
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
import { createHash, randomFillSync } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

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

/** A refused upgrade: the server answered the handshake with a status other than 101. */
export class WsHandshakeError extends Error {
  readonly httpStatus: number;
  constructor(httpStatus: number, statusLine: string) {
    super(`WebSocket upgrade refused: ${statusLine}`);
    this.name = 'WsHandshakeError';
    this.httpStatus = httpStatus;
  }
}

export function connectWs(opts: WsClientOptions): WsClient {
  return new Connection(opts);
}

// ---------------------------------------------------------------------------------------
// Constants

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;

const CLOSE_NORMAL = 1000;
const CLOSE_PROTOCOL_ERROR = 1002;
const CLOSE_NO_STATUS = 1005;
const CLOSE_ABNORMAL = 1006;
const CLOSE_TOO_BIG = 1009;

const DEFAULT_MAX_PAYLOAD = 64 * 1024 * 1024;
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
/** How long we wait for the server to end TCP after the close handshake before destroying. */
const CLOSE_TIMEOUT_MS = 3_000;
/** An HTTP response head larger than this is not a WebSocket server talking. */
const MAX_RESPONSE_HEAD = 16 * 1024;
/** Control frames (close, ping, pong) carry at most this many payload bytes. */
const MAX_CONTROL_PAYLOAD = 125;
/** Largest frame header: 2 bytes + 8-byte length + 4-byte mask. */
const MAX_HEADER = 14;

const enum State {
  Connecting,
  Open,
  Closing,
  Closed,
}

// ---------------------------------------------------------------------------------------
// Shared buffers

/**
 * Every socket reads into this one buffer: reads are delivered synchronously, one at a time,
 * and everything that outlives a read (partial headers, partial payloads, fragments) is
 * copied out, so sharing it is safe and saves a 64 KiB allocation per read.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/**
 * Mask keys and handshake keys come from a pool refilled by one randomFillSync call per
 * 4 KiB: a CSPRNG call per frame would cost more than the frame. RFC 6455 asks for
 * unpredictable keys to defeat proxy cache poisoning; this keeps them CSPRNG-derived.
 */
const RANDOM_POOL = Buffer.allocUnsafe(4096);
let randomOffset = RANDOM_POOL.length;

function takeRandom(bytes: number): number {
  if (randomOffset + bytes > RANDOM_POOL.length) {
    randomFillSync(RANDOM_POOL);
    randomOffset = 0;
  }
  const at = randomOffset;
  randomOffset += bytes;
  return at;
}

// ---------------------------------------------------------------------------------------
// Frame encoding

function headerLength(payloadLength: number): number {
  // Client frames are always masked, so every header carries 4 mask bytes.
  if (payloadLength < 126) return 6;
  if (payloadLength < 65536) return 8;
  return 14;
}

/**
 * Writes a masked frame header at `at` and returns the payload offset. The payload is then
 * written at that offset and masked in place with maskPayload().
 */
function writeHeader(out: Buffer, at: number, opcode: number, payloadLength: number): number {
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
function maskPayload(out: Buffer, start: number, length: number): void {
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

function encodeFrame(opcode: number, payload: string | Buffer): Buffer {
  const length = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  const out = Buffer.allocUnsafe(headerLength(length) + length);
  const start = writeHeader(out, 0, opcode, length);
  if (typeof payload === 'string') out.write(payload, start);
  else payload.copy(out, start);
  maskPayload(out, start, length);
  return out;
}

function encodeClosePayload(code: number, reason: string): Buffer {
  const payload = Buffer.allocUnsafe(2 + Buffer.byteLength(reason));
  payload.writeUInt16BE(code, 0);
  payload.write(reason, 2);
  return payload;
}

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
  private readonly maxPayload: number;
  private state = State.Connecting;

  // Handshake: the response head is accumulated here until the blank line.
  private responseHead: Buffer | null = Buffer.alloc(0);

  // Parser state between reads. A header cut by a read boundary is collected in `header`;
  // a payload cut by a read boundary is collected in `payload`, allocated once at its full
  // size (so a 1 MB frame over 16 reads costs one copy, not 16 concatenations).
  private readonly header = Buffer.allocUnsafe(MAX_HEADER);
  private headerHave = 0;
  private payload: Buffer | null = null;
  private payloadHave = 0;
  private frameFin = false;
  private frameOpcode = 0;
  // Fragmented message in progress: its opcode and the fragments so far.
  private fragmentOpcode = -1;
  private fragments: Buffer[] = [];
  private fragmentsLength = 0;

  private closeSent = false;
  private closeCode = CLOSE_ABNORMAL;
  private closeReason = '';
  private closeReported = false;
  private closeTimer: NodeJS.Timeout | null = null;

  constructor(opts: WsClientOptions) {
    this.opts = opts;
    this.maxPayload = opts.maxPayload ?? DEFAULT_MAX_PAYLOAD;
    const keyAt = takeRandom(16);
    this.key = RANDOM_POOL.toString('base64', keyAt, keyAt + 16);
    const socket = connect({
      host: opts.host,
      port: opts.port,
      onread: { buffer: READ_BUFFER, callback: (n: number) => this.onRead(n) },
    });
    this.socket = socket;
    socket.setNoDelay(true);
    const handshakeTimeout = opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    if (handshakeTimeout > 0) {
      socket.setTimeout(handshakeTimeout, () => {
        this.fail(new Error(`WebSocket handshake timed out after ${handshakeTimeout} ms`));
      });
    }
    socket.on('connect', () => socket.write(this.requestHead()));
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
  // Handshake

  private requestHead(): string {
    const { host, port, path, protocols, headers } = this.opts;
    let head =
      `GET ${path} HTTP/1.1\r\n` +
      `Host: ${host.includes(':') ? `[${host}]` : host}:${port}\r\n` +
      'Upgrade: websocket\r\n' +
      'Connection: Upgrade\r\n' +
      `Sec-WebSocket-Key: ${this.key}\r\n` +
      'Sec-WebSocket-Version: 13\r\n';
    if (protocols && protocols.length > 0) head += `Sec-WebSocket-Protocol: ${protocols.join(', ')}\r\n`;
    if (headers) {
      for (const name of Object.keys(headers)) {
        const value = headers[name]!;
        if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) throw new Error(`header ${name} contains CR or LF`);
        head += `${name}: ${value}\r\n`;
      }
    }
    return head + '\r\n';
  }

  /** Returns the offset in `data` where frames begin, or -1 when the head is incomplete or bad. */
  private onHandshakeData(data: Buffer): number {
    const previous = this.responseHead!;
    // The head is small and arrives once, so concatenating here costs nothing worth saving.
    const head = previous.length === 0 ? Buffer.from(data) : Buffer.concat([previous, data]);
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) {
      if (head.length > MAX_RESPONSE_HEAD) this.fail(new Error('WebSocket handshake response head too large'));
      else this.responseHead = head;
      return -1;
    }
    this.responseHead = null;
    const lines = head.toString('latin1', 0, end).split('\r\n');
    const statusLine = lines[0] ?? '';
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
    if (!status) {
      this.fail(new Error(`WebSocket handshake: malformed status line ${JSON.stringify(statusLine)}`));
      return -1;
    }
    const httpStatus = Number(status[1]);
    if (httpStatus !== 101) {
      this.fail(new WsHandshakeError(httpStatus, statusLine));
      return -1;
    }
    const fields = new Map<string, string>();
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(':');
      if (colon > 0) fields.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const problem = this.checkUpgradeHeaders(fields);
    if (problem) {
      this.fail(new Error(`WebSocket handshake: ${problem}`));
      return -1;
    }
    this.protocol = fields.get('sec-websocket-protocol') ?? '';
    this.connectedAt = performance.now();
    this.openMs = this.connectedAt - this.startedAt;
    this.state = State.Open;
    this.socket.setTimeout(0);
    // Bytes after the head are already frames; `data` is the read buffer, so offset into it.
    return data.length - (head.length - (end + 4));
  }

  private checkUpgradeHeaders(fields: Map<string, string>): string | null {
    if (fields.get('upgrade')?.toLowerCase() !== 'websocket') return 'missing Upgrade: websocket';
    if (!/(^|,)\s*upgrade\s*(,|$)/i.test(fields.get('connection') ?? '')) return 'missing Connection: upgrade';
    const expected = createHash('sha1').update(this.key + WS_GUID).digest('base64');
    if (fields.get('sec-websocket-accept') !== expected) return 'bad Sec-WebSocket-Accept';
    if (fields.get('sec-websocket-extensions')) return 'server chose an extension that was not offered';
    const chosen = fields.get('sec-websocket-protocol');
    if (chosen !== undefined && !(this.opts.protocols ?? []).includes(chosen)) {
      return `server chose protocol ${JSON.stringify(chosen)} that was not offered`;
    }
    return null;
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
    this.parse(data, offset, nread);
    return true;
  }

  /** Parses frames in data[offset, end). Anything cut off by `end` is copied into parser state. */
  private parse(data: Buffer, offset: number, end: number): void {
    if (this.payload !== null) {
      offset = this.continuePayload(data, offset, end);
    } else if (this.headerHave > 0) {
      offset = this.continueHeader(data, offset, end);
    }
    while (offset < end && this.state !== State.Closed) {
      const available = end - offset;
      if (available < 2) {
        offset = this.continueHeader(data, offset, end);
        continue;
      }
      const b0 = data[offset]!;
      const b1 = data[offset + 1]!;
      let length = b1 & 0x7f;
      let headerSize = 2;
      if (length === 126) headerSize = 4;
      else if (length === 127) headerSize = 10;
      if (b1 & 0x80) headerSize += 4;
      if (available < headerSize) {
        offset = this.continueHeader(data, offset, end);
        continue;
      }
      if (length === 126) length = data.readUInt16BE(offset + 2);
      else if (length === 127) length = readLength64(data, offset + 2);
      if (!this.acceptHeader(b0, b1, length)) return;
      const start = offset + headerSize;
      if (end - start >= length) {
        offset = start + length;
        this.onFrame(b0 & 0x80, b0 & 0x0f, data.subarray(start, offset));
      } else {
        this.beginPayload(b0, length);
        offset = this.continuePayload(data, start, end);
      }
    }
  }

  /**
   * Completes a header cut by a read boundary, copying at most MAX_HEADER bytes.
   * Returns the offset of the first byte after what it consumed.
   */
  private continueHeader(data: Buffer, offset: number, end: number): number {
    const header = this.header;
    while (offset < end && this.headerHave < 2) header[this.headerHave++] = data[offset++]!;
    if (this.headerHave < 2) return offset;
    const b0 = header[0]!;
    const b1 = header[1]!;
    let length = b1 & 0x7f;
    let headerSize = length === 126 ? 4 : length === 127 ? 10 : 2;
    if (b1 & 0x80) headerSize += 4;
    while (offset < end && this.headerHave < headerSize) header[this.headerHave++] = data[offset++]!;
    if (this.headerHave < headerSize) return offset;
    this.headerHave = 0;
    if (length === 126) length = header.readUInt16BE(2);
    else if (length === 127) length = readLength64(header, 2);
    if (!this.acceptHeader(b0, b1, length)) return end;
    if (length === 0) {
      this.onFrame(b0 & 0x80, b0 & 0x0f, Buffer.alloc(0));
      return offset;
    }
    this.beginPayload(b0, length);
    return this.continuePayload(data, offset, end);
  }

  private beginPayload(b0: number, length: number): void {
    this.payload = Buffer.allocUnsafe(length);
    this.payloadHave = 0;
    this.frameFin = (b0 & 0x80) !== 0;
    this.frameOpcode = b0 & 0x0f;
  }

  private continuePayload(data: Buffer, offset: number, end: number): number {
    const payload = this.payload!;
    const take = Math.min(payload.length - this.payloadHave, end - offset);
    data.copy(payload, this.payloadHave, offset, offset + take);
    this.payloadHave += take;
    offset += take;
    if (this.payloadHave === payload.length) {
      this.payload = null;
      this.onFrame(this.frameFin ? 0x80 : 0, this.frameOpcode, payload, true);
    }
    return offset;
  }

  /** Validates a frame header; on a violation fails the connection and returns false. */
  private acceptHeader(b0: number, b1: number, length: number): boolean {
    const opcode = b0 & 0x0f;
    let problem: string | null = null;
    let code = CLOSE_PROTOCOL_ERROR;
    if (b0 & 0x70) problem = 'reserved bits set without a negotiated extension';
    else if (b1 & 0x80) problem = 'server frames must not be masked';
    else if (opcode >= OP_CLOSE) {
      if (opcode > OP_PONG) problem = `unknown control opcode ${opcode}`;
      else if (!(b0 & 0x80)) problem = 'fragmented control frame';
      else if (length > 125) problem = 'control frame longer than 125 bytes';
    } else if (opcode > OP_BINARY) problem = `unknown data opcode ${opcode}`;
    else if (opcode === OP_CONTINUATION && this.fragmentOpcode < 0) problem = 'continuation without a message';
    else if (opcode !== OP_CONTINUATION && this.fragmentOpcode >= 0) problem = 'new message inside a fragmented one';
    else if (this.fragmentsLength + length > this.maxPayload) {
      problem = `message larger than maxPayload (${this.maxPayload} bytes)`;
      code = CLOSE_TOO_BIG;
    }
    if (problem === null) return true;
    this.protocolError(code, problem);
    return false;
  }

  /**
   * Handles one complete frame. `owned` says the payload is our own copy rather than a view
   * into the shared read buffer.
   */
  private onFrame(fin: number, opcode: number, payload: Buffer, owned = false): void {
    if (opcode === OP_TEXT || opcode === OP_BINARY) {
      if (fin) {
        this.deliver(opcode, payload, owned);
        return;
      }
      this.fragmentOpcode = opcode;
      this.fragments.push(owned ? payload : Buffer.from(payload));
      this.fragmentsLength = payload.length;
      return;
    }
    if (opcode === OP_CONTINUATION) {
      this.fragments.push(owned ? payload : Buffer.from(payload));
      this.fragmentsLength += payload.length;
      if (!fin) return;
      const message = Buffer.concat(this.fragments, this.fragmentsLength);
      const messageOpcode = this.fragmentOpcode;
      this.fragments = [];
      this.fragmentsLength = 0;
      this.fragmentOpcode = -1;
      this.deliver(messageOpcode, message, true);
      return;
    }
    if (opcode === OP_PING) {
      if (this.state === State.Open) this.socket.write(encodeFrame(OP_PONG, payload));
      return;
    }
    if (opcode === OP_PONG) {
      this.opts.onPong?.(owned || !this.opts.copyPayloads ? payload : Buffer.from(payload));
      return;
    }
    this.onCloseFrame(payload);
  }

  private deliver(opcode: number, payload: Buffer, owned: boolean): void {
    // Messages that arrive after we started closing are still delivered: the server sent
    // them before it saw our close, and a load generator must count them.
    if (this.state === State.Closed) return;
    this.opts.onMessage(owned || !this.opts.copyPayloads ? payload : Buffer.from(payload), opcode === OP_BINARY);
  }

  private onCloseFrame(payload: Buffer): void {
    if (payload.length === 1) {
      this.protocolError(CLOSE_PROTOCOL_ERROR, 'close frame with a 1-byte payload');
      return;
    }
    this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : CLOSE_NO_STATUS;
    this.closeReason = payload.length > 2 ? payload.toString('utf8', 2) : '';
    if (this.state === State.Open) this.state = State.Closing;
    // Echo the code back (RFC 6455 5.5.1), then half-close; the server closes TCP first.
    if (!this.closeSent) {
      this.closeSent = true;
      const echo = payload.length >= 2 ? payload.subarray(0, 2) : Buffer.alloc(0);
      this.socket.write(encodeFrame(OP_CLOSE, echo));
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

function readLength64(data: Buffer, at: number): number {
  const high = data.readUInt32BE(at);
  // A length beyond 2^53 cannot be a real frame; make it exceed any maxPayload.
  if (high >= 0x200000) return Number.MAX_SAFE_INTEGER;
  return high * 0x100000000 + data.readUInt32BE(at + 4);
}

/**
 * One WebSocket connection of the client, from dial to close: the encoding the server picked,
 * the `auth` frame, the deadline for the `welcome`, the heartbeat that gives up on a silent
 * path, and a close that reports exactly once. The session across connections (groups,
 * requests, recovery) is the client's (client.ts).
 */
import { JSON_PROTOCOL, jsonCodec, MSGPACK_PROTOCOL, type ClientCodec } from './codec.js';
import { Pacer, type PaceLimits } from './pacer.js';
import { CLOSING, onBytes, OPEN, type WebSocketConstructor, type WebSocketLike } from './socket.js';
import { after } from './timers.js';

/**
 * The largest frame taken from a server by default: `ws`'s own default (what Node clients took
 * before the SDK had a cap). Room for a message of the largest `max_payload` (64 MiB) in its
 * envelope, and for a `batch` of the default config (at most half of `ring_bytes`, 4 MiB); a
 * server with larger rings can send larger batches: raise it to half of their `ring_bytes`.
 */
export const MAX_FRAME_BYTES = 100 * 1024 * 1024;
/**
 * How long a closing handshake may wait for the other side, either way round, before the socket
 * is dropped (where it can be): close() for the server's close frame, and after the server's
 * close frame for its end of the TCP connection. A server that sent its close frame has nothing
 * more to say (and its code is known); the wait only delays the reconnect, by 30 s in `ws`. A
 * second is a slow link's round trip, and what Firefox waits (Chromium 2 s).
 */
const CLOSE_GRACE_MS = 1000;

export interface ConnectionLimits {
  /** How long the connection may take to be welcomed, ms. */
  connectTimeoutMs: number;
  /** A larger frame from the server closes the connection with 1009 unread. */
  maxFrameBytes: number;
  /** A frame whose values would cost more (heap-cost.ts) is dropped as undecodable. */
  maxFrameHeapBytes: number;
}

export interface ConnectionEvents {
  /** A decoded frame (anything that decodes to an object). */
  frame(frame: Record<string, unknown>): void;
  /** The connection is gone (called once; not after close()). */
  closed(code: number, reason: string): void;
  /** A message from the server that is not a frame (why): nothing in it can be answered, but the app hears of it. */
  undecodable(reason: string): void;
}

export class Connection {
  /** Frames received on this connection. */
  frames = 0;
  /** Chunks of bytes read from its TCP socket (`ws` only, socket.ts onBytes). */
  private chunks = 0;
  /** The server's close frame came: the socket is dropped if the server does not end it in time. */
  private closing = false;
  private codec: ClientCodec = jsonCodec;
  private socket: WebSocketLike | null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private pacer: Pacer<string | Uint8Array> | null = null;

  constructor(
    WebSocketClass: WebSocketConstructor,
    url: string,
    private readonly msgpack: ClientCodec | null,
    token: string | undefined,
    private readonly limits: ConnectionLimits,
    private readonly events: ConnectionEvents,
  ) {
    // `ws` (Node) refuses a larger frame before buffering it whole, and bounds a closing
    // handshake by closeTimeout (where too old to know it, onChunk does); a global WebSocket
    // (browsers, Node 22, React Native, which warns about options it does not know) is not given
    // options: it buffers the frame, and onData refuses it before decoding.
    const protocols = msgpack !== null ? [MSGPACK_PROTOCOL, JSON_PROTOCOL] : [JSON_PROTOCOL];
    const globalWebSocket = (globalThis as { WebSocket?: unknown }).WebSocket;
    const options = { maxPayload: limits.maxFrameBytes, closeTimeout: CLOSE_GRACE_MS };
    const socket = (WebSocketClass === globalWebSocket ? new WebSocketClass(url, protocols) : new WebSocketClass(url, protocols, options)) as WebSocketLike;
    this.socket = socket;
    onBytes(socket, () => this.onChunk());
    socket.binaryType = 'arraybuffer';
    socket.onopen = () => {
      this.codec = socket.protocol === MSGPACK_PROTOCOL && msgpack !== null ? msgpack : jsonCodec;
      if (token !== undefined) this.send({ op: 'auth', token });
    };
    socket.onmessage = (event) => this.onData(event.data);
    // `ws` reports a frame over maxPayload as an error, then closes with 1006: told as 1009.
    let tooLarge = false;
    socket.onclose = (event) => this.gone(tooLarge && event.code === 1006 ? 1009 : event.code, tooLarge ? 'frame over maxFrameBytes' : event.reason);
    socket.onerror = (event) => {
      tooLarge ||= (event as { error?: { code?: unknown } } | null)?.error?.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH';
    };
    this.arm(limits.connectTimeoutMs, () => this.abandon('not welcomed in time', 1006));
  }

  get encoding(): 'json' | 'msgpack' {
    return this.codec === jsonCodec ? 'json' : 'msgpack';
  }

  /**
   * Encoded now (a frame that cannot be throws here), sent now or, past the server's pace, in its
   * turn; `first`: ahead of the frames that wait (pacer.ts).
   */
  send(frame: Record<string, unknown>, first = false): void {
    const socket = this.socket;
    if (socket === null || socket.readyState !== OPEN) return;
    const data = this.codec.encode(frame);
    if (this.pacer === null) socket.send(data);
    else if (first) this.pacer.sendFirst(data, frame.op === 'ack');
    else this.pacer.send(data, typeof frame.ref === 'string' ? frame.ref : undefined);
  }

  /** Sends at once the frames that would go first (acks, a ping, a token refresh): the client is closing. */
  flushFirst(): void {
    this.pacer?.flushFirst();
  }

  /** The request `ref` failed (timed out): if its frame still waits for its turn, it is not sent. */
  cancel(ref: string): void {
    this.pacer?.cancel(ref);
  }

  /**
   * The `welcome` came: frames go out at the pace its `limits` allow (pacer.ts), and from now on
   * silence for `heartbeatMs` sends a `ping`, and silence for as long again gives the connection
   * up (0: never).
   */
  welcomed(heartbeatMs: number, limits: PaceLimits | null): void {
    this.disarm();
    if (limits !== null) {
      this.pacer = new Pacer<string | Uint8Array>(limits, (data) => {
        const socket = this.socket;
        if (socket !== null && socket.readyState === OPEN) socket.send(data);
      });
    }
    if (heartbeatMs <= 0) return;
    // Bytes of a frame still arriving count: a large frame on a slow link is not a silent path.
    let seen = this.frames + this.chunks;
    let pinged = false;
    const beat = (): void => {
      if (this.frames + this.chunks !== seen) {
        seen = this.frames + this.chunks;
        pinged = false;
      } else if (pinged) {
        return this.abandon('no answer to ping', 1006);
      } else {
        pinged = true;
        this.send({ op: 'ping', t: Date.now() }, true);
      }
      this.arm(heartbeatMs, beat);
    };
    this.arm(heartbeatMs, beat);
  }

  /**
   * Closes without reporting it (the client decided). Where the socket can be dropped (`ws`),
   * it is after `graceMs` without the server's half of the handshake: `ws` otherwise waits 30 s
   * for it from a server that stopped answering, and keeps the process alive that long.
   */
  close(code = 1000, reason = '', graceMs = CLOSE_GRACE_MS): void {
    const socket = this.detach();
    if (socket === null) return;
    try {
      socket.close(code, reason);
    } catch {
      // already closing
    }
    if (socket.terminate === undefined) return;
    if (graceMs <= 0) return socket.terminate();
    const timer = setTimeout(() => socket.terminate!(), graceMs);
    (timer as { unref?: () => void }).unref?.();
  }

  /**
   * Gives up on a socket that stopped answering (1006: its close handshake may never come), or
   * that sent a frame over maxFrameBytes (1009, the code `ws` reports for one). It is closed
   * with 1000: a browser's close() throws for any other code under 3000.
   */
  private abandon(reason: string, code: 1006 | 1009): void {
    if (this.socket === null) return;
    this.close(1000, reason, 0);
    this.events.closed(code, reason);
  }

  private onData(data: unknown): void {
    this.frames++;
    // A string's length undercounts its UTF-8 bytes by at most 3x: still a bound on the decoding work.
    const size = typeof data === 'string' ? data.length : data instanceof ArrayBuffer ? data.byteLength : 0;
    if (size > this.limits.maxFrameBytes) return this.abandon(`frame of ${size} bytes from the server, over maxFrameBytes`, 1009);
    let frame: unknown;
    try {
      frame = this.codec.decode(data, this.limits.maxFrameBytes, this.limits.maxFrameHeapBytes);
    } catch (err) {
      return this.events.undecodable(err instanceof Error ? err.message : String(err));
    }
    if (frame !== null && typeof frame === 'object') this.events.frame(frame as Record<string, unknown>);
  }

  private onChunk(): void {
    this.chunks++;
    // The server's close frame was in it: `ws` has answered it and waits for the server to end
    // the TCP connection. Bounded here too, for a `ws` without closeTimeout.
    const socket = this.socket;
    if (socket === null || socket.readyState !== CLOSING || this.closing) return;
    this.closing = true;
    this.arm(CLOSE_GRACE_MS, () => socket.terminate?.());
  }

  private gone(code: number, reason: string): void {
    if (this.detach() !== null) this.events.closed(code, reason);
  }

  private detach(): WebSocketLike | null {
    const socket = this.socket;
    this.socket = null;
    this.disarm();
    this.pacer?.stop();
    if (socket !== null) {
      socket.onopen = null;
      socket.onmessage = null;
      socket.onclose = null;
      socket.onerror = () => undefined;
    }
    return socket;
  }

  private arm(ms: number, run: () => void): void {
    this.disarm();
    this.timer = after(ms, run);
  }

  private disarm(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}

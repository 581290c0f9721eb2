/**
 * The frames of one welcomed connection, in order, while some of them are decoded in the codec
 * pool. A small frame with nothing queued before it is handled at once (the hot path pays one
 * null check and one comparison). A large frame goes to the pool, and so does every large frame
 * behind it while the pool has room, so that a client sending many large frames keeps the pool
 * busy rather than waiting on it one frame at a time; what arrives meanwhile queues behind them.
 * Results are handled in arrival order, each when every frame before it has been.
 *
 * Bounded: what waits here holds at most HELD_BYTES_FACTOR x max_payload per connection, each
 * frame counted as its bytes plus QUEUED_FRAME_BYTES (its entry; a frame in the pool, or one
 * over max_payload, holds no bytes here: the entry alone); beyond that the connection is closed
 * with 4029 (E_RATE_LIMITED), as one that floods before its welcome is. Not a count of frames:
 * a cap of 256 closed an honest client that sent a large pub then 400 small ones in one go,
 * frames it may send at once without the large one (with no rate limit, or a burst over 256).
 */
import type { Codec } from '../codec/codec.js';
import type { PrepareResult, PrepareTask } from '../codec/tasks.js';
import { decodedBytes, LZ4_MAX_RATIO } from '../protocol/wire.js';
import type { Connection, Socket } from './connection.js';

/** Bytes of what one connection may have queued here, in units of max_payload. */
export const HELD_BYTES_FACTOR = 4;
/** What a queued frame costs beside its bytes: its entry, and its buffer's own object. */
export const QUEUED_FRAME_BYTES = 128;

/** One queued frame: bytes to decode here, or a task in the pool (settled once it answered). */
export interface Inbound {
  bytes: ArrayBuffer | null;
  binary: boolean;
  /** epochMs() when it arrived: a pub's latency starts then. */
  receivedAt: number;
  settled: boolean;
  /** The pool's answer, or why it failed; null while pending. */
  result: PrepareResult | Error | null;
  msgId: string | null;
  /** > 0: a frame of that many bytes over max_payload, refused in its turn (bytes and result null). */
  oversize: number;
}

/** What the dispatcher does with each frame, in order. */
export interface InboundHandler {
  /** Rate limit, decode here and handle. */
  frame(ws: Socket, conn: Connection, bytes: ArrayBuffer, isBinary: boolean, receivedAt: number, now: number): void;
  /** Rate limit and handle what the pool decoded, or report that it failed on it. */
  prepared(ws: Socket, conn: Connection, result: PrepareResult | Error, msgId: string | null, receivedAt: number, now: number): void;
  /** The pool task for a large frame, and the message id it gives a pub. */
  task(conn: Connection, bytes: Uint8Array, isBinary: boolean): { task: Omit<PrepareTask, 'kind' | 'lz4Threshold'>; msgId: string | null };
  /** Too much queued: E_RATE_LIMITED and close. */
  flooded(ws: Socket, conn: Connection, message: string): void;
  /** A frame over max_payload, in its turn: E_TOO_LARGE and close. */
  tooLarge(ws: Socket, conn: Connection, bytes: number): void;
}

export class InboundFrames {
  private readonly maxHeldBytes: number;

  constructor(
    private readonly codec: Pick<Codec, 'offloads' | 'offloadThreshold' | 'prepare'>,
    private readonly handler: InboundHandler,
    private readonly maxPayload: number,
  ) {
    this.maxHeldBytes = HELD_BYTES_FACTOR * maxPayload;
  }

  /** A frame of a ready connection (uWS's `message` is valid only during this call). */
  arrive(ws: Socket, conn: Connection, message: ArrayBuffer, isBinary: boolean, receivedAt: number, now: number): void {
    // An LZ4-compressed msgpack frame is judged by the body it inflates to, not by its bytes;
    // one too short to inflate to the threshold is not even looked at (no view to allocate).
    const mayBeLarge = isBinary && conn.frames.binary && message.byteLength * LZ4_MAX_RATIO >= this.codec.offloadThreshold;
    const work = mayBeLarge ? decodedBytes(message, this.maxPayload) : message.byteLength;
    const large = work >= this.codec.offloadThreshold;
    if (conn.inq === null && !large) return this.handler.frame(ws, conn, message, isBinary, receivedAt, now);
    if (large && this.codec.offloads(work)) return this.offload(ws, conn, message, isBinary, receivedAt);
    // The pool is full: decode here, now if nothing waits, else in its turn.
    if (conn.inq === null) return this.handler.frame(ws, conn, message, isBinary, receivedAt, now);
    if (!this.hold(ws, conn, message.byteLength)) return;
    conn.inq.push({ bytes: message.slice(0), binary: isBinary, receivedAt, settled: true, result: null, msgId: null, oversize: 0 });
  }

  /**
   * A frame over max_payload: refused now if nothing waits, else behind the frames that came
   * before it (which are handled as if it had not come: PROTOCOL.md, Order).
   */
  refuse(ws: Socket, conn: Connection, bytes: number): void {
    const queue = conn.inq;
    if (queue === null) return this.handler.tooLarge(ws, conn, bytes);
    if (!this.hold(ws, conn, 0)) return;
    queue.push({ bytes: null, binary: false, receivedAt: 0, settled: true, result: null, msgId: null, oversize: bytes });
  }

  /** Counts a frame of `bytes` held here against the connection's bound; false (and closed) past it. */
  private hold(ws: Socket, conn: Connection, bytes: number): boolean {
    const cost = bytes + QUEUED_FRAME_BYTES;
    if (conn.inqBytes + cost > this.maxHeldBytes) {
      this.handler.flooded(ws, conn, `over ${this.maxHeldBytes} bytes of frames sent while large frames were being decoded`);
      return false;
    }
    conn.inqBytes += cost;
    return true;
  }

  private offload(ws: Socket, conn: Connection, message: ArrayBuffer, isBinary: boolean, receivedAt: number): void {
    const queue = (conn.inq ??= []);
    if (!this.hold(ws, conn, 0)) return;
    // A copy: uWS's buffer is valid only during its callback. Moved, not copied again, to the pool.
    const { task, msgId } = this.handler.task(conn, new Uint8Array(message.slice(0)), isBinary);
    const entry: Inbound = { bytes: null, binary: isBinary, receivedAt, settled: false, result: null, msgId, oversize: 0 };
    queue.push(entry);
    this.codec
      .prepare(task)
      .then(
        (result) => (entry.result = result),
        (err: unknown) => (entry.result = err instanceof Error ? err : new Error(String(err))),
      )
      .finally(() => {
        entry.settled = true;
        if (queue[0] === entry) this.drain(ws, conn);
      });
  }

  /**
   * Handles the settled frames at the head of the queue, in order, until one closes the
   * connection (a refusal). A connection the client closed first has its frames dropped, as
   * those waiting for the welcome are: no answer went out for any of them, so the client cannot
   * count on them (a `send` it wants stored, it sends again until acknowledged).
   */
  private drain(ws: Socket, conn: Connection): void {
    const queue = conn.inq;
    // uWS forbids touching a closed socket; its frames have no one to answer.
    if (queue === null || conn.closed) return;
    ws.cork(() => {
      const now = Date.now();
      let next = 0;
      while (next < queue.length && queue[next]!.settled && !conn.closed) {
        const entry = queue[next++]!;
        conn.inqBytes -= (entry.bytes?.byteLength ?? 0) + QUEUED_FRAME_BYTES;
        if (entry.oversize > 0) this.handler.tooLarge(ws, conn, entry.oversize);
        else if (entry.bytes !== null) {
          this.handler.frame(ws, conn, entry.bytes, entry.binary, entry.receivedAt, now);
        } else {
          this.handler.prepared(ws, conn, entry.result!, entry.msgId, entry.receivedAt, now);
        }
      }
      queue.splice(0, next);
      if (queue.length === 0 && conn.inq === queue) {
        conn.inq = null;
        conn.inqBytes = 0;
      }
    });
  }
}

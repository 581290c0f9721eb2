/**
 * Frames to one connection, in order. A frame is sent at once unless frames before it still
 * wait for the codec pool (a stored backlog or a recovery's replay being turned into binary
 * frames): then it queues behind them, and the queue is flushed, in order, as their results
 * come in. Only msgpack connections ever queue (JSON deliveries are sent as the broker wrote
 * them), and a connection with nothing pending pays one null check per frame.
 *
 * Deliveries (msg and batch frames) are counted here, when handed to uWS, with the bytes that
 * actually go out: a binary frame's bytes, compressed or not.
 */
import { Buffer } from 'node:buffer';
import { ErrorCodes } from '../protocol/errors.js';
import type { Wire } from '../protocol/server-frames.js';
import { Counter } from '../shared/shard-counters.js';
import type { Logger } from '../util/logger.js';
import type { Connection, Socket } from './connection.js';

/** Frames one connection may have queued behind the pool; more means it is not keeping up: closed as a slow consumer. */
export const MAX_QUEUED_FRAMES = 1024;

/** One queued frame; `wire` null while the pool works on it, and null for good if it failed. */
export interface Queued {
  wire: Wire | null;
  ready: boolean;
  /** A msg/batch frame: counted as a delivery when sent. */
  delivery: boolean;
  /** Run when its turn comes, before its frame (after(): no frame); `clear`: see after(). */
  action: ((clear: boolean) => void) | null;
  /** A live message of this group (deliver()), or the group an action catches up with (after()). */
  group: string | null;
}

export class Out {
  constructor(
    private readonly counters: Float64Array,
    private readonly log: Pick<Logger, 'error'>,
  ) {}

  /** A reply (anything but msg/batch) to `conn`. */
  send(ws: Socket, conn: Connection, wire: Wire): void {
    // uWS forbids touching a closed socket; a reply that comes after the close has no one to go to.
    if (conn.closed) return;
    if (conn.outq === null) ws.send(wire, typeof wire !== 'string');
    else this.enqueue(ws, conn, { wire, ready: true, delivery: false, action: null, group: null });
  }

  /**
   * A msg/batch frame to `conn`, ready or on its way from the pool; `group`: a live message of
   * that group (see after()). Returns false when nothing was sent or queued.
   */
  deliver(ws: Socket, conn: Connection, wire: Wire | Promise<Wire>, group: string | null = null): boolean {
    return this.put(ws, conn, wire, true, group);
  }

  /** A reply the broker wrote (`presence`, `history`, a recovery's replay), ready or on its way from the pool. */
  answer(ws: Socket, conn: Connection, wire: Wire | Promise<Wire>): void {
    this.put(ws, conn, wire, false, null);
  }

  /**
   * Runs `action` once every frame queued for `conn` before it has gone out: at once when none
   * waits; never if the connection closes first. `clear`: nothing queued after it waits for the
   * pool, so all of it goes out in the same turn; when false, a frame sent now straight to the
   * socket (a uWS publish) would overtake the frames still queued. With `group`, only that
   * group's live messages count (deliver()): when those queued behind are all ready, they go out
   * at once, ahead of the frames still in the pool, and it is clear. A group message may come
   * between a connection's other frames (PROTOCOL.md, Order), and without this a steady flow of
   * pool frames (large direct messages) could keep a catch-up from ever ending.
   */
  after(ws: Socket, conn: Connection, action: (clear: boolean) => void, group: string | null = null): void {
    if (conn.outq === null) action(true);
    else this.enqueue(ws, conn, { wire: null, ready: true, delivery: false, action, group });
  }

  private put(ws: Socket, conn: Connection, wire: Wire | Promise<Wire>, delivery: boolean, group: string | null): boolean {
    if (typeof wire === 'string' || wire instanceof Uint8Array) {
      if (conn.outq !== null || conn.closed) return this.enqueue(ws, conn, { wire, ready: true, delivery, action: null, group });
      ws.send(wire, typeof wire !== 'string');
      if (delivery) this.counted(wire);
      return true;
    }
    const item: Queued = { wire: null, ready: false, delivery, action: null, group };
    if (!this.enqueue(ws, conn, item)) return false;
    wire.then(
      (done) => (item.wire = done),
      (err: unknown) => {
        // A stored message is redelivered after its ack timeout; the order of the rest holds.
        this.counters[Counter.errors_internal]!++;
        this.log.error({ code: 'E_INTERNAL', err, sid: conn.sid }, delivery ? 'codec pool failed on a delivery' : 'codec pool failed on a reply');
      },
    ).finally(() => {
      item.ready = true;
      this.flush(ws, conn);
    });
    return true;
  }

  private enqueue(ws: Socket, conn: Connection, item: Queued): boolean {
    if (conn.closed) return false;
    const queue = (conn.outq ??= []);
    if (queue.length >= MAX_QUEUED_FRAMES) {
      this.counters[Counter.slow_consumers_closed]!++;
      conn.outq = [];
      ws.end(ErrorCodes.E_OVERLOADED.close, `over ${MAX_QUEUED_FRAMES} frames waiting for the codec pool`);
      return false;
    }
    queue.push(item);
    return true;
  }

  /** Sends what is ready at the head of the queue. */
  private flush(ws: Socket, conn: Connection): void {
    const queue = conn.outq;
    if (queue === null) return;
    // uWS forbids touching a closed socket; what waited for it has no one to go to.
    if (conn.closed) {
      conn.outq = null;
      return;
    }
    ws.cork(() => {
      let sent = 0;
      while (sent < queue.length && queue[sent]!.ready) {
        const { wire, delivery, action, group } = queue[sent++]!;
        if (action !== null) {
          action(allReady(queue, sent) || (group !== null && this.sendAhead(ws, queue, sent, group)));
          // The action may have queued more and found the queue full: the socket is closed (uWS forbids touching it) and the queue dropped.
          if (conn.closed || conn.outq !== queue) return;
        }
        if (wire === null) continue;
        ws.send(wire, typeof wire !== 'string');
        if (delivery) this.counted(wire);
      }
      queue.splice(0, sent);
      if (queue.length === 0) conn.outq = null;
    });
  }

  /**
   * Sends now the live messages of `group` queued from `from` on, up to the next catch-up of
   * the same group (a leave and a join with `since` since: its replay comes first), and takes
   * them out of the queue, if all of them are ready; false (nothing sent) if one still waits
   * for the pool.
   */
  private sendAhead(ws: Socket, queue: Queued[], from: number, group: string): boolean {
    let end = from;
    for (; end < queue.length; end++) {
      const item = queue[end]!;
      if (item.group !== group) continue;
      if (item.action !== null) break;
      if (!item.ready) return false;
    }
    let kept = from;
    for (let i = from; i < queue.length; i++) {
      const item = queue[i]!;
      if (i >= end || item.group !== group || item.wire === null) {
        queue[kept++] = item;
        continue;
      }
      ws.send(item.wire, typeof item.wire !== 'string');
      if (item.delivery) this.counted(item.wire);
    }
    queue.length = kept;
    return true;
  }

  private counted(wire: Wire): void {
    this.counters[Counter.deliveries]!++;
    this.counters[Counter.bytes_out]! += typeof wire === 'string' ? Buffer.byteLength(wire) : wire.byteLength;
  }
}

/** Whether every frame of `queue` from `from` on is ready (none waits for the pool). */
function allReady(queue: Queued[], from: number): boolean {
  for (let i = from; i < queue.length; i++) if (!queue[i]!.ready) return false;
  return true;
}

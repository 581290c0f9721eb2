/**
 * How a shard refuses one frame or one connection: an `err` frame with a code from the one
 * table (src/protocol/errors.ts), counted under that code's counter, and optionally the close.
 */
import { ErrorCodes, type ErrorCode } from '../protocol/errors.js';
import { errorCounter } from '../shared/shard-counters.js';
import type { Connection, Socket } from './connection.js';
import type { Out } from './out.js';

/** Sends an `err` frame and, when `close`, closes with the code's close code; `id`: a refused `ack`'s message id. */
export type Fail = (ws: Socket, conn: Connection, code: ErrorCode, message: string, ref: string | undefined, close?: boolean, id?: string) => void;

/** One `fail` per shard, over that shard's counters; the `err` goes out in the connection's encoding, in order. */
export function failer(counters: Float64Array, out: Pick<Out, 'send'>): Fail {
  return (ws, conn, code, message, ref, close = false, id) => {
    counters[errorCounter[code]]!++;
    // Counted even so: the refusal happened, only its delivery is moot.
    if (conn.closed) return;
    out.send(ws, conn, conn.frames.error(code, message, ref, undefined, id));
    if (close) ws.end(ErrorCodes[code].close, message.slice(0, 120));
  };
}

/**
 * Every HTTP answer of the server goes out through answer(), so that uWS's rules hold on every
 * route, whatever the client does:
 *
 * - An abort handler is attached when the request arrives (watch()), before anything is
 *   written. Without one, a client that resets its socket while a body larger than the socket
 *   takes at once is being written (the dashboard, /metrics) made uWS abort the whole process
 *   ("Returning from a request handler without responding or attaching an abort handler is
 *   forbidden"): an adversarial review killed the server with 300 such requests in 0.1 s.
 * - A body the socket does not take at once is written as it drains (onWritable), and what
 *   waits so is bounded per thread (MAX_WAITING_BYTES): a client that pipelines requests and
 *   never reads its answers made them pile up (12 MB/s per connection, 600 MB in 30 s with
 *   four). Past the bound, the connection whose answer has waited longest without its reader
 *   taking a byte (STALLED_MS at least) is closed to make room; only when none has stalled is
 *   the new answer's connection closed. Before, it was always the new one: connections that
 *   never read held the bound (each for uWS's 10 s), and every answer of anyone else that did
 *   not fit its socket at once (a DLQ page, /metrics of many shards) was cut.
 * - A HEAD request gets the headers and the length, not the body (a body there broke the
 *   framing for keep-alive clients, and HEAD /health was a 404).
 */
import { Buffer } from 'node:buffer';
import type { HttpRequest, HttpResponse } from './uws.js';

/** Bytes of answers waiting for their sockets, per thread, beyond which a new wait closes a connection. */
export const MAX_WAITING_BYTES = 8 * 1024 * 1024;
/**
 * How long an answer must have waited without progress before a new one may take its place.
 * A reader that reads makes progress many times a second; TCP's first retransmission comes after 1 s.
 * On the wall clock: a step forward may take answers for stalled early (only as many as a newcomer
 * needs, the longest waiting first); a step back refuses the newcomer, as before.
 */
export const STALLED_MS = 2_000;

/** What a request's handler knows of its response after the handler returned. */
export interface Watched {
  aborted: boolean;
  head: boolean;
}

const WATCHED = Symbol('ocs.http.watched');
type WithWatch = HttpResponse & { [WATCHED]?: Watched };

/** An answer waiting for its socket: `left` bytes unsent, the last of its socket's progress at `progressAt`. */
interface Waiting {
  res: HttpResponse;
  left: number;
  progressAt: number;
}

/** In order of last progress, the longest stalled first (progress moves an entry to the end). */
const waiting = new Set<Waiting>();
let waitingBytes = 0;

/** The answers waiting for their sockets in this thread, and their bytes (for tests and gauges). */
export function waitingAnswers(): { count: number; bytes: number } {
  return { count: waiting.size, bytes: waitingBytes };
}

/**
 * Marks the request's response as watched: called first in every handler, while `req` is
 * valid. Later calls (an async answer) get the same state without touching `req`.
 */
export function watch(res: HttpResponse, req?: HttpRequest): Watched {
  const r = res as WithWatch;
  let state = r[WATCHED];
  if (state !== undefined) return state;
  state = { aborted: false, head: req !== undefined && req.getMethod() === 'head' };
  const watched = (r[WATCHED] = state);
  res.onAborted(() => {
    watched.aborted = true;
  });
  return state;
}

/** Writes one complete answer, unless the client went away. `headers`: name, value pairs. */
export function answer(res: HttpResponse, status: string, headers: ReadonlyArray<readonly [string, string]>, body: string | Uint8Array): void {
  const state = watch(res);
  if (state.aborted) return;
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  let start = -1;
  res.cork(() => {
    res.writeStatus(status);
    for (const [name, value] of headers) res.writeHeader(name, value);
    if (state.head) {
      // The length by hand: uWS's endWithoutBody(length) leaves the response waiting for that many bytes.
      res.writeHeader('content-length', String(bytes.byteLength)).endWithoutBody();
      return;
    }
    const offset = res.getWriteOffset();
    if (!res.tryEnd(bytes, bytes.byteLength)[1]) start = offset;
  });
  // Outside the cork: close() ends a connection (this one or a stalled one), and uWS then calls its abort handler, which marks it.
  if (start >= 0 && !writeAsItDrains(res, state, bytes, start)) res.close();
}

/** Writes the rest of `bytes` as the socket drains; false (nothing armed) when that would pass MAX_WAITING_BYTES. */
function writeAsItDrains(res: HttpResponse, state: Watched, bytes: Uint8Array, start: number): boolean {
  const entry: Waiting = { res, left: bytes.byteLength - (res.getWriteOffset() - start), progressAt: Date.now() };
  if (!makeRoom(entry.left, entry.progressAt)) return false;
  waiting.add(entry);
  waitingBytes += entry.left;
  const settle = (): void => {
    if (waiting.delete(entry)) waitingBytes -= entry.left;
  };
  res.onAborted(() => {
    state.aborted = true;
    settle();
  });
  res.onWritable((offset) => {
    const [ok, done] = res.tryEnd(bytes.subarray(offset - start), bytes.byteLength);
    if (done) {
      settle();
    } else {
      const left = bytes.byteLength - (res.getWriteOffset() - start);
      if (left < entry.left) {
        waitingBytes += left - entry.left;
        entry.left = left;
        entry.progressAt = Date.now();
        waiting.delete(entry);
        waiting.add(entry);
      }
    }
    return ok;
  });
  return true;
}

/** Closes stalled waiting answers, the longest stalled first, until `bytes` more fit; false when they cannot. */
function makeRoom(bytes: number, now: number): boolean {
  while (waitingBytes + bytes > MAX_WAITING_BYTES) {
    const stalest = waiting.values().next().value as Waiting | undefined;
    if (stalest === undefined || now - stalest.progressAt < STALLED_MS) return false;
    waiting.delete(stalest);
    waitingBytes -= stalest.left;
    // uWS calls its abort handler, which marks it aborted (its settle() finds it gone already).
    stalest.res.close();
  }
  return true;
}

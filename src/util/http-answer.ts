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
 *   four). Past the bound the connection the answer is for is closed.
 * - A HEAD request gets the headers and the length, not the body (a body there broke the
 *   framing for keep-alive clients, and HEAD /health was a 404).
 */
import { Buffer } from 'node:buffer';
import type { HttpRequest, HttpResponse } from './uws.js';

/** Bytes of answers waiting for their sockets, per thread, beyond which a new wait closes its connection. */
export const MAX_WAITING_BYTES = 8 * 1024 * 1024;

/** What a request's handler knows of its response after the handler returned. */
export interface Watched {
  aborted: boolean;
  head: boolean;
}

const WATCHED = Symbol('ocs.http.watched');
type WithWatch = HttpResponse & { [WATCHED]?: Watched };

let waitingBytes = 0;

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
  let overBound = false;
  res.cork(() => {
    res.writeStatus(status);
    for (const [name, value] of headers) res.writeHeader(name, value);
    if (state.head) {
      // The length by hand: uWS's endWithoutBody(length) leaves the response waiting for that many bytes.
      res.writeHeader('content-length', String(bytes.byteLength)).endWithoutBody();
      return;
    }
    const start = res.getWriteOffset();
    const [, done] = res.tryEnd(bytes, bytes.byteLength);
    if (!done) overBound = !writeAsItDrains(res, state, bytes, start);
  });
  // Outside the cork: close() ends the connection, and uWS then calls the abort handler, which marks it.
  if (overBound) res.close();
}

/** Writes the rest of `bytes` as the socket drains; false (nothing armed) when that would pass MAX_WAITING_BYTES. */
function writeAsItDrains(res: HttpResponse, state: Watched, bytes: Uint8Array, start: number): boolean {
  let left = bytes.byteLength - (res.getWriteOffset() - start);
  if (waitingBytes + left > MAX_WAITING_BYTES) return false;
  waitingBytes += left;
  const settle = (): void => {
    waitingBytes -= left;
    left = 0;
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
      const now = bytes.byteLength - (res.getWriteOffset() - start);
      waitingBytes += now - left;
      left = now;
    }
    return ok;
  });
  return true;
}

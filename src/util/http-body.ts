/**
 * A request is acted on once it has arrived whole. uWS calls a route's handler when the headers
 * are in; its body (if any) follows. The admin API takes no body, and it forwarded each request to
 * the broker at once: a `DELETE /admin/dlq` declaring 1,000 bytes of body and reset after 11 of
 * them purged every dead letter, though the client never finished (an HTTP client that gives up
 * on a request expects nothing of it done; a proxy would not have forwarded it). The body is read
 * and thrown away, up to MAX_IGNORED_BODY_BYTES; reading it also puts uWS's rule on slow bodies
 * in force (16 KB every 10 s or the connection is closed).
 */
import type { Watched } from './http-answer.js';
import type { HttpResponse } from './uws.js';

/** The most of a body that is read and ignored: a client sending more is refused (an honest one sends none, or `{}`). */
export const MAX_IGNORED_BODY_BYTES = 64 * 1024;

/**
 * Calls `then` once the request's body has ended (at once when it has none, as uWS reports
 * that too), unless the client went away first; `tooLarge` once the body passes
 * MAX_IGNORED_BODY_BYTES. Call it in the handler, after watch().
 */
export function afterBody(res: HttpResponse, state: Watched, then: () => void, tooLarge: () => void): void {
  let bytes = 0;
  let settled = false;
  res.onData((chunk, isLast) => {
    if (settled) return;
    bytes += chunk.byteLength;
    if (bytes > MAX_IGNORED_BODY_BYTES) {
      settled = true;
      return tooLarge();
    }
    if (!isLast) return;
    settled = true;
    if (!state.aborted) then();
  });
}

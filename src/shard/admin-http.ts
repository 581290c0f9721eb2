/**
 * /admin/* on the WebSocket port: the dead-letter queue API. The shard checks who may call
 * it and forwards the request to the broker (which owns the store) over its ring.
 *
 * Access: with `websocket.admin.token` set, a request needs `authorization: Bearer TOKEN`;
 * without one, only loopback clients (127.0.0.0/8, ::1) are answered, so a server without a
 * token does not expose its dead letters to the network.
 *
 * A browser on the same host is a loopback client too: a page could POST a requeue or DELETE
 * the queue (a cross-site request forgery). So a request that changes state and carries the
 * marks of a browser (`Origin`, `Sec-Fetch-*`) needs the token even from loopback; the CLI and
 * curl send neither. The token is compared in constant time.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { httpError, httpStatusLine, type HttpCode } from '../protocol/errors.js';
import { answer, watch } from '../util/http-answer.js';
import type { HttpRequest, HttpResponse, TemplatedApp } from '../util/uws.js';
import { JSON_HEADERS } from './http.js';

export interface AdminForwarder {
  /** Sends the request to the broker; `reply` is called once with its answer. */
  forward(method: string, path: string, reply: (status: number, bodyJson: string) => void): void;
}

export function attachAdminRoutes(app: TemplatedApp, token: string, forwarder: AdminForwarder): void {
  const expected = token === '' ? null : digest(`Bearer ${token}`);
  const handler = (res: HttpResponse, req: HttpRequest): void => {
    const method = req.getMethod();
    const query = req.getQuery();
    const path = req.getUrl() + (query ? `?${query}` : '');
    const authorization = req.getHeader('authorization');
    const fromBrowser = req.getHeader('origin') !== '' || req.getHeader('sec-fetch-site') !== '' || req.getHeader('sec-fetch-mode') !== '';
    watch(res, req);
    const reply = (status: number, body: string): void => answer(res, httpStatusLine(status), JSON_HEADERS, body);
    const refuse = (code: HttpCode, message: string): void => {
      const { status, body } = httpError(code, message);
      reply(status, JSON.stringify(body));
    };
    if (expected !== null) {
      if (!timingSafeEqual(digest(authorization), expected)) return refuse('unauthorized', 'admin endpoints need authorization: Bearer <websocket.admin.token>');
    } else if (!isLoopback(Buffer.from(res.getRemoteAddressAsText()).toString())) {
      return refuse('forbidden', 'no websocket.admin.token is configured: admin endpoints answer loopback clients only');
    } else if (fromBrowser && method !== 'get' && method !== 'head') {
      return refuse('forbidden', 'a browser request that changes state needs websocket.admin.token (cross-site request forgery protection)');
    }
    // HEAD is a GET whose body answer() leaves out.
    forwarder.forward(method === 'head' ? 'get' : method, path, reply);
  };
  app.any('/admin/*', handler);
  app.any('/admin', handler);
}

/** Equal-length digests, so that timingSafeEqual neither throws nor leaks the token's length. */
export function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.') || /^0{4}(:0{4}){6}:0{3}1$/.test(address) || address.startsWith('0000:0000:0000:0000:0000:ffff:7f');
}

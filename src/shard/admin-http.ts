/**
 * /admin/* on the WebSocket port: the dead-letter queue API. The shard checks who may call
 * it and forwards the request to the broker (which owns the store) over its ring.
 *
 * Access: with `websocket.admin.token` set, a request needs `authorization: Bearer TOKEN`;
 * without one, only loopback clients (127.0.0.0/8, ::1) are answered, so a server without a
 * token does not expose its dead letters to the network. Behind a proxy listed in
 * trusted_proxies the client is the one it forwards for, not the proxy (which may well be on
 * this host: every remote client would pass as loopback).
 *
 * A browser on the same host is a loopback client too: a page could POST a requeue or DELETE
 * the queue (a cross-site request forgery). So a request that changes state and carries the
 * marks of a browser (`Origin`, `Sec-Fetch-Site`) needs the token even from loopback; the CLI
 * and curl send neither. A page may still read (the same-origin policy keeps another site's page
 * from seeing the answer), but only when the request names this host by a loopback name: a
 * page whose own name was made to resolve to 127.0.0.1 (DNS rebinding) is same-origin with
 * us for the browser, and its requests say its name in `Host`. The token is compared in
 * constant time.
 *
 * A proxy on this host that is not in trusted_proxies makes every client loopback too: without
 * a token, a request that carries a proxy's forwarding headers is refused. And the target must
 * be the path the broker acts on: nginx matched `/admin/%2E%2E/ws\..\admin\dlq` to its `location
 * /ws` and passed it on as sent, where the URL parser read `/admin/dlq` (a review read, purged
 * and requeued the dead letters from another host that way, through deploy/nginx's file).
 * A request that passes is forwarded once it has arrived whole (src/util/http-body.ts).
 */
import { httpError, httpStatusLine, type HttpCode } from '../protocol/errors.js';
import { bearerCheck } from '../util/bearer.js';
import { answer, watch } from '../util/http-answer.js';
import { afterBody, MAX_IGNORED_BODY_BYTES } from '../util/http-body.js';
import type { ClientAddresses } from './client-address.js';
import type { HttpRequest, HttpResponse } from '../util/uws.js';
import { JSON_HEADERS, type HttpRoutes } from './http.js';

export interface AdminForwarder {
  /** Sends the request to the broker; `reply` is called once with its answer. */
  forward(method: string, path: string, reply: (status: number, bodyJson: string) => void): void;
}

export function attachAdminRoutes(app: HttpRoutes, token: string, forwarder: AdminForwarder, clients: ClientAddresses): void {
  const authorized = bearerCheck(token);
  const handler = (res: HttpResponse, req: HttpRequest): void => {
    const method = req.getMethod();
    const query = req.getQuery();
    const path = req.getUrl() + (query ? `?${query}` : '');
    const authorization = req.getHeader('authorization');
    // Browsers send Sec-Fetch-Site on every request, and Origin on these methods; Node's fetch
    // (the CLI's) sends Sec-Fetch-Mode alone, so that one is not a mark.
    const fromBrowser = req.getHeader('origin') !== '' || req.getHeader('sec-fetch-site') !== '';
    const host = req.getHeader('host');
    const client = clients.ofRequest(req, res);
    const url = req.getUrl();
    // Forwarded (one of a proxy's headers) is not local, unless a trusted proxy names its client
    // in X-Forwarded-For (then that client is judged). A request with none of them from loopback
    // is curl on this host, or a proxy that says nothing, which nothing tells apart (README).
    const proxied = FORWARDING_HEADERS.some((name) => req.getHeader(name) !== '');
    const forwarded = proxied && !(clients.trustsPeer(res) && clients.namesClient(req));
    const state = watch(res, req);
    const reply = (status: number, body: string): void => answer(res, httpStatusLine(status), JSON_HEADERS, body);
    const refuse = (code: HttpCode, message: string): void => {
      const { status, body } = httpError(code, message);
      reply(status, JSON.stringify(body));
    };
    if (!isCanonical(url)) return refuse('bad_request', 'the admin path has dot segments, an encoded dot or a backslash: send it as the URL parser would write it');
    if (authorized !== null) {
      if (!authorized(authorization)) return refuse('unauthorized', 'admin endpoints need authorization: Bearer <websocket.admin.token>');
    } else if (!isLoopback(client)) {
      return refuse('forbidden', 'no websocket.admin.token is configured: admin endpoints answer loopback clients only');
    } else if (forwarded) {
      return refuse('forbidden', 'no websocket.admin.token is configured: admin endpoints do not answer what a proxy forwards without naming its client in X-Forwarded-For (list the proxy in websocket.server.trusted_proxies to have its clients\' addresses read, or set the token)');
    } else if (!isLoopbackHost(host)) {
      return refuse('forbidden', 'no websocket.admin.token is configured: admin endpoints answer requests to localhost or a loopback address only, not to another name (DNS rebinding protection)');
    } else if (fromBrowser && method !== 'get' && method !== 'head') {
      return refuse('forbidden', 'a browser request that changes state needs websocket.admin.token (cross-site request forgery protection)');
    }
    // HEAD is a GET whose body answer() leaves out. Forwarded once the request is whole (http-body.ts).
    afterBody(
      res,
      state,
      () => forwarder.forward(method === 'head' ? 'get' : method, path, reply),
      () => refuse('bad_request', `the admin API takes no request body; at most ${MAX_IGNORED_BODY_BYTES} bytes of one are read and ignored`),
    );
  };
  app.any('/admin/*', handler);
  app.any('/admin', handler);
}

/** Headers a forwarding proxy adds: a request with one came through a proxy. */
const FORWARDING_HEADERS = ['x-forwarded-for', 'forwarded', 'x-real-ip', 'via', 'x-forwarded-host', 'x-forwarded-proto', 'x-client-ip', 'true-client-ip', 'cf-connecting-ip'] as const;

/** Whether `path` reads the same before and after a URL parser: no `.`/`..` segments (encoded or not), no `\`. */
export function isCanonical(path: string): boolean {
  if (path.includes('\\')) return false;
  try {
    return new URL(path, 'http://x').pathname === path;
  } catch {
    return false;
  }
}

/**
 * Whether a Host header names this host by a loopback name: localhost (and *.localhost, which
 * browsers resolve to loopback themselves), 127.0.0.0/8 or [::1], any port. An empty one passes:
 * uWS answers no request without Host (nor any HTTP/1.0 one), so none reaches here today, and
 * a browser always sends one.
 */
export function isLoopbackHost(host: string): boolean {
  const name = host.toLowerCase().replace(/:\d*$/, '');
  if (name === '' || name === 'localhost' || name.endsWith('.localhost') || name === '[::1]') return true;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
}

function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.') || /^0{4}(:0{4}){6}:0{3}1$/.test(address) || address.startsWith('0000:0000:0000:0000:0000:ffff:7f');
}

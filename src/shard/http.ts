/**
 * The HTTP side of every shard: /health on the WebSocket port, and the live part of /stats
 * (served with the primary's latency figures by src/metrics/http.ts), answered from the shared
 * shard table so any shard can answer for all of them.
 */
import { httpError, httpStatusLine, type HttpCode } from '../protocol/errors.js';
import { LINKS, shardStatusName, ShardStatus, type LinkName, type LinkState, type ShardTable } from '../shared/shard-table.js';
import { COUNTERS, MESSAGING_COUNTERS, byName } from '../shared/shard-counters.js';
import { answer, watch } from '../util/http-answer.js';
import type { HttpRequest, HttpResponse, TemplatedApp } from '../util/uws.js';
import type { ClusterState } from '../shared/cluster-state.js';

export interface HttpContext {
  /** The shard answering. */
  shard: number;
  /** A link that has not drained for longer is stuck: /health says degraded (monitoring.link_stuck_after). */
  linkStuckMs: number;
  table: ShardTable;
  /** Cluster mode's state (Redis reachable, nodes alive); off for one process. */
  cluster: ClusterState;
  version: string;
  startedAt: number;
  maxConnections: number;
  metricsEnabled: boolean;
  isStopping(): boolean;
}

export function health(context: HttpContext): { status: string; body: Record<string, unknown> } {
  const { table } = context;
  const shards = [];
  const now = Date.now();
  let up = 0;
  let stuck = 0;
  for (let shard = 0; shard < table.shards; shard++) {
    const status = table.status(shard);
    if (status === ShardStatus.UP) up++;
    const links = {} as Record<LinkName, LinkState>;
    LINKS.forEach((name, link) => {
      links[name] = table.linkState(shard, link, now);
      if (links[name].waiting_ms > context.linkStuckMs) stuck++;
    });
    shards.push({ shard, status: shardStatusName(status), connections: table.connections(shard), links });
  }
  const stopping = context.isStopping();
  // The store is the primary's; it publishes its health in the table. Unwritable: send/any are refused.
  const store = table.storeHealth();
  // Cluster mode: without Redis the node serves its own clients only.
  const cluster = context.cluster.view();
  const clusterOk = cluster === null || cluster.redis === 'up';
  // Near the open-file limit the listen sockets are closed (src/primary/open-file-guard.ts):
  // only a connection made before, a load balancer's kept-alive one, can ask.
  const accepting = table.accepting();
  const state = stopping ? 'stopping' : up === table.shards && stuck === 0 && store.writable && clusterOk && accepting ? 'ok' : 'degraded';
  return {
    status: stopping ? '503 Service Unavailable' : '200 OK',
    body: {
      status: state,
      shard: context.shard,
      version: context.version,
      uptime_s: Math.round((Date.now() - context.startedAt) / 1000),
      connections: table.totalConnections(),
      max_connections: context.maxConnections,
      accepting,
      shards: { configured: table.shards, up, stuck_links: stuck, list: shards },
      store,
      ...(cluster === null ? {} : { cluster }),
    },
  };
}

export function stats(context: HttpContext): Record<string, unknown> {
  const { table } = context;
  const rates: Record<string, number> = {};
  COUNTERS.forEach((name, i) => (rates[name] = Math.round(table.rates[i]! * 10) / 10));
  return {
    version: context.version,
    uptime_s: Math.round((Date.now() - context.startedAt) / 1000),
    connections: table.totalConnections(),
    totals: byName(table.totals()),
    rates_per_s: context.metricsEnabled ? rates : null,
    // The broker's counters (send/any/ack), as of the last sample.
    messaging: context.metricsEnabled ? Object.fromEntries(MESSAGING_COUNTERS.map((name, i) => [name, table.messaging[i]])) : null,
    shards: Array.from({ length: table.shards }, (_, shard) => table.snapshot(shard)),
  };
}

export const JSON_HEADERS = [
  ['content-type', 'application/json'],
  ['cache-control', 'no-store'],
] as const;

export function sendJson(res: HttpResponse, status: string, body: unknown): void {
  answer(res, status, JSON_HEADERS, JSON.stringify(body));
}

export type RouteHandler = (res: HttpResponse, req: HttpRequest) => void;

/** The part of a uWS app the HTTP routes are registered on (a TemplatedApp is one). */
export interface HttpRoutes {
  get(pattern: string, handler: RouteHandler): unknown;
  head(pattern: string, handler: RouteHandler): unknown;
  any(pattern: string, handler: RouteHandler): unknown;
}

/**
 * `app`'s HTTP routes behind `admit`, which answers the requests it refuses itself (the
 * per-address request limit): every route registered through it is, so none can be missed.
 */
export function gatedRoutes(app: TemplatedApp, admit: (res: HttpResponse, req: HttpRequest) => boolean): HttpRoutes {
  const gate =
    (handler: RouteHandler): RouteHandler =>
    (res, req) => {
      if (admit(res, req)) handler(res, req);
    };
  return {
    get: (pattern, handler) => app.get(pattern, gate(handler)),
    head: (pattern, handler) => app.head(pattern, gate(handler)),
    any: (pattern, handler) => app.any(pattern, gate(handler)),
  };
}

/** GET and HEAD of `pattern` (HEAD answers the headers alone); the handler's response is watched (http-answer.ts). */
export function getRoute(app: HttpRoutes, pattern: string, handler: RouteHandler): void {
  const watched = (res: HttpResponse, req: HttpRequest): void => {
    watch(res, req);
    handler(res, req);
  };
  app.get(pattern, watched);
  app.head(pattern, watched);
}

/** A coded refusal from the one table (HttpCodes in src/protocol/errors.ts), with a Retry-After (seconds) if given. */
export function sendError(res: HttpResponse, code: HttpCode, message: string, retryAfter?: string): void {
  const { status, body } = httpError(code, message);
  answer(res, httpStatusLine(status), retryAfter === undefined ? JSON_HEADERS : [...JSON_HEADERS, ['retry-after', retryAfter]], JSON.stringify(body));
}

export function attachHttpRoutes(app: HttpRoutes, context: HttpContext): void {
  getRoute(app, '/health', (res) => {
    const { status, body } = health(context);
    sendJson(res, status, body);
  });
  app.any('/*', (res, req) => {
    watch(res, req);
    sendError(res, 'not_found', 'see /health, /stats, or the WebSocket endpoint');
  });
}

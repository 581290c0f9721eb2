/**
 * The HTTP side of every shard: /health on the WebSocket port, and the live part of /stats
 * (served with the primary's latency figures by src/metrics/http.ts), answered from the shared
 * shard table so any shard can answer for all of them.
 */
import { COUNTERS, MESSAGING_COUNTERS, byName, ShardStatus, type ShardTable } from '../shared/shard-table.js';
import type { HttpResponse, TemplatedApp } from '../util/uws.js';

export interface HttpContext {
  table: ShardTable;
  version: string;
  startedAt: number;
  maxConnections: number;
  metricsEnabled: boolean;
  isStopping(): boolean;
}

export function health(context: HttpContext): { status: string; body: Record<string, unknown> } {
  const { table } = context;
  const shards = [];
  let up = 0;
  for (let shard = 0; shard < table.shards; shard++) {
    const status = table.status(shard);
    if (status === ShardStatus.UP) up++;
    shards.push({ shard, status: ['down', 'starting', 'up', 'stopping'][status], connections: table.connections(shard) });
  }
  const stopping = context.isStopping();
  const state = stopping ? 'stopping' : up === table.shards ? 'ok' : 'degraded';
  return {
    status: stopping ? '503 Service Unavailable' : '200 OK',
    body: {
      status: state,
      version: context.version,
      uptime_s: Math.round((Date.now() - context.startedAt) / 1000),
      connections: table.totalConnections(),
      max_connections: context.maxConnections,
      shards: { configured: table.shards, up, list: shards },
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

export function sendJson(res: HttpResponse, status: string, body: unknown): void {
  res.cork(() => {
    res.writeStatus(status).writeHeader('content-type', 'application/json').writeHeader('cache-control', 'no-store').end(JSON.stringify(body));
  });
}

export function attachHttpRoutes(app: TemplatedApp, context: HttpContext): void {
  app.get('/health', (res) => {
    const { status, body } = health(context);
    sendJson(res, status, body);
  });
  app.any('/*', (res) => sendJson(res, '404 Not Found', { code: 'not_found', message: 'see /health, /stats, or the WebSocket endpoint' }));
}

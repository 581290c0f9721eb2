/**
 * GET /metrics (Prometheus text 0.0.4), /stats and /alerts on the WebSocket port (and the page
 * that draws them, /dashboard: src/metrics/dashboard.ts), answered by
 * whichever shard takes the request: it copies the document the primary rendered into shared
 * memory this interval (src/metrics/snapshot.ts) and sends it. /stats is the shard table's live
 * counters (src/shard/http.ts) with the primary's latency, resource and alert figures spliced in.
 *
 * With monitoring.token set, each needs `authorization: Bearer TOKEN` (compared in constant
 * time); without one they answer anyone: they hold no user ids, group names or content.
 */
import { timingSafeEqual } from 'node:crypto';
import { httpError, httpStatusLine, type HttpCode } from '../protocol/errors.js';
import { digest } from '../shard/admin-http.js';
import { sendError, sendJson } from '../shard/http.js';
import type { HttpRequest, HttpResponse, TemplatedApp } from '../util/uws.js';
import { attachDashboardRoute } from './dashboard.js';
import { SnapshotDoc, type SnapshotDocValue, type SnapshotReader } from './snapshot.js';

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export interface MetricsRoutesOptions {
  token: string;
  /** monitoring.enable_metrics_collection: false leaves /stats with its counters only. */
  enabled: boolean;
  snapshot: SnapshotReader;
  /** The live part of /stats. */
  liveStats(): Record<string, unknown>;
}

export function attachMetricsRoutes(app: TemplatedApp, options: MetricsRoutesOptions): void {
  const expected = options.token === '' ? null : digest(`Bearer ${options.token}`);
  const allowed = (req: HttpRequest): boolean => expected === null || timingSafeEqual(digest(req.getHeader('authorization')), expected);
  const { snapshot, enabled } = options;

  const document = (doc: Exclude<SnapshotDocValue, typeof SnapshotDoc.STATS>, contentType: string, onDemand = false) => (res: HttpResponse, req: HttpRequest) => {
    if (!allowed(req)) return unauthorized(res);
    if (!enabled) return sendError(res, 'not_found', 'monitoring.enable_metrics_collection is false');
    if (onDemand) snapshot.want(doc);
    const body = snapshot.read(doc);
    if (body === null) return sendError(res, 'unavailable', 'no metrics rendered yet; retry shortly');
    res.cork(() => {
      res.writeStatus('200 OK').writeHeader('content-type', contentType).writeHeader('cache-control', 'no-store').end(body);
    });
  };
  app.get('/metrics', document(SnapshotDoc.METRICS, PROMETHEUS_CONTENT_TYPE));
  app.get('/alerts', document(SnapshotDoc.ALERTS, 'application/json'));
  // Rendered on demand: the first request asks for it, and is answered 503 until it is there.
  app.get('/stats/histograms', document(SnapshotDoc.HISTOGRAMS, 'application/json', true));
  attachDashboardRoute(app);

  app.get('/stats', (res, req) => {
    if (!allowed(req)) return unauthorized(res);
    const live = JSON.stringify(options.liveStats());
    const extra = enabled ? snapshot.read(SnapshotDoc.STATS) : null;
    // Both are JSON objects: splice the rendered fields in after the live ones.
    const body = extra === null || extra.length <= 2 ? live : `${live.slice(0, -1)},${extra.toString('utf8', 1)}`;
    res.cork(() => {
      res.writeStatus('200 OK').writeHeader('content-type', 'application/json').writeHeader('cache-control', 'no-store').end(body);
    });
  });
}

function unauthorized(res: HttpResponse): void {
  sendError(res, 'unauthorized', 'monitoring endpoints need authorization: Bearer <websocket.monitoring.token>');
}

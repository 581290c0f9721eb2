/**
 * GET /metrics (Prometheus text 0.0.4), /stats and /alerts on the WebSocket port (and the page
 * that draws them, /dashboard: src/metrics/dashboard.ts), answered by
 * whichever shard takes the request: it copies the document the primary rendered into shared
 * memory (src/metrics/snapshot.ts) and sends it. /stats is the shard table's live counters
 * (src/shard/http.ts) with the primary's latency, resource and alert figures spliced in.
 *
 * The primary renders a document only when asked: a request for one not yet rendered from the
 * last interval's figures wakes the primary and is answered when the render is there (a few
 * ms), or after RENDER_WAIT_MS with the previous one (or 503 before the first).
 *
 * With monitoring.token set, each needs `authorization: Bearer TOKEN` (compared in constant
 * time); without one they answer anyone: they hold no user ids, group names or content.
 */
import { httpError, httpStatusLine, type HttpCode } from '../protocol/errors.js';
import { bearerCheck } from '../util/bearer.js';
import { getRoute, JSON_HEADERS, sendError, sendJson, type HttpRoutes } from '../shard/http.js';
import { answer, watch } from '../util/http-answer.js';
import type { HttpRequest, HttpResponse } from '../util/uws.js';
import { attachDashboardRoute } from './dashboard.js';
import { SnapshotDoc, type SnapshotDocValue, type SnapshotReader } from './snapshot.js';

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
/** The longest a request waits for the primary's render: a primary that stalls does not hang scrapes. */
export const RENDER_WAIT_MS = 2000;
/** How often a waiting request looks whether the render is there (only while one waits). */
const RENDER_POLL_MS = 2;

export interface MetricsRoutesOptions {
  token: string;
  /** monitoring.enable_metrics_collection: false leaves /stats with its counters only. */
  enabled: boolean;
  snapshot: SnapshotReader;
  /** Wakes the primary to render the documents marked wanted. */
  wake(): void;
  /** The live part of /stats. */
  liveStats(): Record<string, unknown>;
}

export function attachMetricsRoutes(app: HttpRoutes, options: MetricsRoutesOptions): void {
  const authorized = bearerCheck(options.token);
  const allowed = (req: HttpRequest): boolean => authorized === null || authorized(req.getHeader('authorization'));
  const { snapshot, enabled } = options;

  /**
   * Calls `answer` once `doc` holds the last interval's figures (at once when it does), or at
   * RENDER_WAIT_MS. Requests for one document wait together: one wake-up of the primary and
   * one poll timer, however many arrive.
   */
  const waiting = new Map<SnapshotDocValue, { view: number; giveUpAt: number; answers: Array<() => void> }>();
  const whenRendered = (res: HttpResponse, doc: SnapshotDocValue, respond: () => void): void => {
    const view = snapshot.view();
    // No figures yet (the first interval is not over): nothing to wait for.
    if (view === 0 || snapshot.isCurrent(doc)) return respond();
    const state = watch(res);
    const answerUnlessAborted = (): void => {
      if (!state.aborted) respond();
    };
    const pending = waiting.get(doc);
    if (pending !== undefined && pending.view === view) {
      pending.answers.push(answerUnlessAborted);
      return;
    }
    snapshot.want(doc);
    options.wake();
    if (pending !== undefined) {
      // A new interval began while they waited: all wait for its render.
      pending.view = view;
      pending.answers.push(answerUnlessAborted);
      return;
    }
    const entry = { view, giveUpAt: Date.now() + RENDER_WAIT_MS, answers: [answerUnlessAborted] };
    waiting.set(doc, entry);
    const poll = (): void => {
      if (snapshot.renderedView(doc) < entry.view && Date.now() < entry.giveUpAt) return void setTimeout(poll, RENDER_POLL_MS);
      waiting.delete(doc);
      for (const answerOne of entry.answers) answerOne();
    };
    setTimeout(poll, RENDER_POLL_MS);
  };

  const document = (doc: Exclude<SnapshotDocValue, typeof SnapshotDoc.STATS>, contentType: string) => (res: HttpResponse, req: HttpRequest) => {
    if (!allowed(req)) return unauthorized(res);
    if (!enabled) return sendError(res, 'not_found', 'monitoring.enable_metrics_collection is false');
    whenRendered(res, doc, () => {
      const body = snapshot.read(doc);
      if (body === null) return sendError(res, 'unavailable', 'no metrics rendered yet; retry shortly');
      answer(res, '200 OK', [['content-type', contentType], ['cache-control', 'no-store']], body);
    });
  };
  getRoute(app, '/metrics', document(SnapshotDoc.METRICS, PROMETHEUS_CONTENT_TYPE));
  getRoute(app, '/alerts', document(SnapshotDoc.ALERTS, 'application/json'));
  getRoute(app, '/stats/histograms', document(SnapshotDoc.HISTOGRAMS, 'application/json'));
  attachDashboardRoute(app);

  getRoute(app, '/stats', (res, req) => {
    if (!allowed(req)) return unauthorized(res);
    const respond = (): void => {
      const live = JSON.stringify(options.liveStats());
      const extra = enabled ? snapshot.read(SnapshotDoc.STATS) : null;
      // Both are JSON objects: splice the rendered fields in after the live ones.
      const body = extra === null || extra.length <= 2 ? live : `${live.slice(0, -1)},${extra.toString('utf8', 1)}`;
      answer(res, '200 OK', JSON_HEADERS, body);
    };
    if (enabled) whenRendered(res, SnapshotDoc.STATS, respond);
    else respond();
  });
}

function unauthorized(res: HttpResponse): void {
  sendError(res, 'unauthorized', 'monitoring endpoints need authorization: Bearer <websocket.monitoring.token>');
}

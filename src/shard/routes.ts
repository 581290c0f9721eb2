/**
 * What a shard's uWS app answers on its port: the WebSocket path (uWS's settings for it, and
 * the part that takes each socket event) and the HTTP routes (/admin, /metrics and /stats,
 * /health). Kept apart from shard.ts, which builds the parts these hand the events to, and
 * starts and stops them.
 */
import { attachMetricsRoutes } from '../metrics/http.js';
import { SnapshotReader } from '../metrics/snapshot.js';
import type { ThreadMetrics } from '../metrics/thread-metrics.js';
import type { ClusterState } from '../shared/cluster-state.js';
import type { ShardTable } from '../shared/shard-table.js';
import type { ShardInit } from '../shared/thread-messages.js';
import { uWS, type TemplatedApp } from '../util/uws.js';
import { attachAdminRoutes } from './admin-http.js';
import type { Admission } from './admission.js';
import type { BrokerLink } from './broker-link.js';
import { connOf, type SocketData } from './connection.js';
import type { Dispatcher } from './dispatch.js';
import type { GroupOps } from './group-ops.js';
import { attachHttpRoutes, gatedRoutes, stats, type HttpContext } from './http.js';
import { pongArrived, type Sweeper } from './sweep.js';

export interface RouteParts {
  app: TemplatedApp;
  config: ShardInit['config']['websocket'];
  init: Pick<ShardInit, 'shard' | 'shards' | 'version' | 'metrics'>;
  table: ShardTable;
  cluster: ClusterState;
  link: BrokerLink;
  admission: Admission;
  dispatch: Dispatcher;
  groupOps: GroupOps;
  sweeper: Sweeper;
  metrics: ThreadMetrics;
  /** No longer accepting (a drain), or stopping: /health says stopping. */
  isStopping(): boolean;
  /** A socket closed, once admission and groupOps have let it go. */
  closed(): void;
}

export function attachRoutes(parts: RouteParts): void {
  const { app, config, init, link, admission, dispatch, groupOps, sweeper, metrics } = parts;
  const { server } = config;
  // Every plain HTTP route counts against its address's http_requests_per_ip; upgrades have their own limits.
  const http = gatedRoutes(app, (res, req) => admission.request(res, req));
  attachAdminRoutes(http, config.admin.token, link, admission.clients);
  const httpContext: HttpContext = {
    shard: init.shard,
    linkStuckMs: config.monitoring.link_stuck_after * 1000,
    table: parts.table,
    cluster: parts.cluster,
    version: init.version,
    startedAt: Date.now(),
    maxConnections: server.max_connections,
    metricsEnabled: config.monitoring.enable_metrics_collection,
    isStopping: parts.isStopping,
  };
  attachMetricsRoutes(http, {
    token: config.monitoring.token,
    enabled: config.monitoring.enable_metrics_collection,
    snapshot: new SnapshotReader(init.metrics, init.shards, config.monitoring.alerts.history),
    wake: () => link.metricsWanted(),
    liveStats: () => stats(httpContext),
  });
  attachHttpRoutes(http, httpContext);
  app.ws<SocketData>(server.path, {
    // Frames between max_payload and twice that are read and refused with E_TOO_LARGE and
    // 1009; larger ones are cut by uWS before they are buffered (the client sees 1006).
    maxPayloadLength: server.max_payload * 2,
    // The slow-consumer sweep closes at max_backpressure with 1013. uWS's own limit sits
    // well above it, so the err and close frames still fit behind the backlog; a socket
    // that reaches it between sweeps is closed by uWS rather than silently skipped.
    maxBackpressure: server.max_backpressure * 4,
    closeOnBackpressureLimit: 1,
    // Idleness is judged by inbound traffic only (our sweep); uWS would count our own pings.
    idleTimeout: 0,
    sendPingsAutomatically: false,
    compression: config.performance.enable_compression ? uWS.SHARED_COMPRESSOR : uWS.DISABLED,
    upgrade: (res, req, context) => admission.upgrade(res, req, context),
    open: (ws) => {
      admission.open(ws);
      sweeper.wake();
    },
    message: (ws, message, isBinary) => dispatch.message(ws, message, isBinary),
    ping: (ws) => dispatch.controlFrame(ws),
    // The pong that answers our ping is free; unsolicited ones (RFC 6455 allows them as a
    // heartbeat) cost a frame each, else a flood of them would be the one frame not counted.
    pong: (ws) => {
      if (!pongArrived(connOf(ws), metrics)) dispatch.controlFrame(ws);
    },
    close: (ws) => {
      admission.close(ws);
      groupOps.closed(connOf(ws));
      parts.closed();
    },
  });
}

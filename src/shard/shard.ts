/**
 * One acceptor thread's life: it builds its parts, listens on the shared port
 * (SO_REUSEPORT), and stops by one sequence whether the primary asked or the shard crashed.
 * What it does meanwhile lives in its parts: admission.ts (upgrade and identity), dispatch.ts
 * (client frames), broker-link.ts (the broker), cross-shard.ts (the other shards), sweep.ts
 * (idle, pings, slow consumers).
 */
import { Authenticator } from '../auth/identity.js';
import { attachMetricsRoutes } from '../metrics/http.js';
import { Latency } from '../metrics/latencies.js';
import { SnapshotReader } from '../metrics/snapshot.js';
import { ThreadMetrics } from '../metrics/thread-metrics.js';
import { CloseCodes } from '../protocol/errors.js';
import { InterestTable } from '../shared/interest-table.js';
import { ClusterState } from '../shared/cluster-state.js';
import { Link, ShardStatus, ShardTable } from '../shared/shard-table.js';
import type { PrimaryToShard, ShardInit, ShardToPrimary } from '../shared/thread-messages.js';
import { createLogger, type Logger } from '../util/logger.js';
import { uWS, type TemplatedApp, type us_listen_socket } from '../util/uws.js';
import { attachAdminRoutes } from './admin-http.js';
import { Admission } from './admission.js';
import { BrokerLink } from './broker-link.js';
import { RateLimiter, type Connection } from './connection.js';
import { CrossShard } from './cross-shard.js';
import { Dispatcher } from './dispatch.js';
import { failer } from './fail.js';
import { LocalGroups } from './groups.js';
import { attachHttpRoutes, stats, type HttpContext } from './http.js';
import { ipLimitsPerShard } from './ip-limits.js';
import { ConnectionRegistry } from './registry.js';
import { pongArrived, Sweeper } from './sweep.js';

export interface ShardChannel {
  post(message: ShardToPrimary): void;
  onMessage(handler: (message: PrimaryToShard) => void): void;
  close(): void;
}

export function runShard(init: ShardInit, channel: ShardChannel): void {
  new Shard(init, channel).start();
}

/** How long a crashed shard waits for close handshakes before cutting its sockets. */
const CRASH_GRACE_MS = 200;
/** How often the shard puts what waits in its rings' overflow into the shared table (/health). */
const LINK_GAUGE_MS = 250;

class Shard {
  private readonly config: ShardInit['config']['websocket'];
  private readonly log: Logger;
  private readonly table: ShardTable;
  private readonly cluster: ClusterState;
  private readonly app: TemplatedApp;
  private readonly registry = new ConnectionRegistry();
  /** This thread's latency histograms, reported to the primary every metrics_collection_interval. */
  private readonly metrics = new ThreadMetrics();
  private readonly link: BrokerLink;
  private readonly cross: CrossShard;
  private readonly admission: Admission;
  private readonly dispatch: Dispatcher;
  private readonly sweeper: Sweeper;
  private listenSocket: us_listen_socket | null = null;
  private graceTimer: NodeJS.Timeout | null = null;
  private gaugeTimer: NodeJS.Timeout | null = null;
  private stopping = false;
  private finished = false;
  /** 1 once the shard crashed: the primary restarts it. */
  private exitCode = 0;

  constructor(private readonly init: ShardInit, private readonly channel: ShardChannel) {
    const config = (this.config = init.config.websocket);
    const { server, limits, performance } = config;
    this.log = createLogger(init.config.logging.level, { shard: init.shard });
    this.table = new ShardTable(init.table);
    this.cluster = new ClusterState(init.clusterState);
    const counters = this.table.countersOf(init.shard);
    const interestTable = new InterestTable(init.interest);
    // What a previous incarnation of this shard counted left with its sockets.
    interestTable.clear(init.shard);
    const interest = interestTable.rowOf(init.shard);
    const fail = failer(counters);
    // Ids never repeat: instance (this process run), shard, generation (this start of the
    // shard), then `s` for a session or `m` for a message, and a sequence.
    const idPrefix = `${init.instance}.${init.shard}.${init.generation.toString(36)}.`;
    this.app = uWS.App();
    const compressFrom = performance.enable_compression ? performance.compression_threshold : Infinity;
    const groups = new LocalGroups(this.app, counters, compressFrom);
    const { registry, metrics } = this;
    this.link = new BrokerLink({
      shard: init.shard,
      brokerSlot: init.shards,
      doorbells: init.doorbells,
      toBroker: init.toBroker,
      fromBroker: init.fromBroker,
      registry,
      groups,
      counters,
      fail,
      latency: metrics,
      welcomed: (ws) => this.dispatch.resume(ws),
      log: this.log,
    });
    this.cross = new CrossShard({
      self: init.shard,
      table: this.table,
      interest: interestTable,
      doorbells: init.doorbells,
      inbound: init.inbound,
      outbound: init.outbound,
      overflowLimitBytes: performance.ring_overflow_bytes,
      counters,
      log: this.log,
      onPub: (topic, frame, receivedAt) => {
        if (groups.publish(topic, frame) > 0) metrics.since(Latency.pub, receivedAt);
      },
      alsoDrain: (budget) => this.link.drain(budget),
    });
    this.admission = new Admission({
      shard: init.shard,
      table: this.table,
      counters,
      auth: new Authenticator(config.auth),
      maxConnections: server.max_connections,
      authTimeout: server.auth_timeout,
      burst: limits.burst,
      sidPrefix: `${idPrefix}s`,
      ipLimits: ipLimitsPerShard(limits, init.shards),
      registry,
      interest,
      link: this.link,
      fail,
      log: this.log,
      isStopping: () => this.stopping,
    });
    this.dispatch = new Dispatcher({
      limits: {
        maxPayload: server.max_payload,
        messagesPerSecond: limits.messages_per_second,
        rateViolationsBeforeClose: limits.rate_violations_before_close,
        badFramesBeforeClose: limits.bad_frames_before_close,
        maxGroupsPerConnection: limits.max_groups_per_connection,
        requireMembership: config.groups.require_membership,
        brokerBacklogLimit: performance.ring_overflow_bytes,
      },
      limiter: new RateLimiter(limits.messages_per_second, limits.burst),
      counters,
      log: this.log,
      fail,
      msgIdPrefix: `${idPrefix}m`,
      admission: this.admission,
      link: this.link,
      cross: this.cross,
      groups,
      interest,
      cluster: this.cluster.clustered ? this.cluster : null,
      processorTypes: init.processorTypes,
      latency: metrics,
    });
    this.sweeper = new Sweeper({
      sockets: registry.sockets,
      policy: { maxBackpressure: server.max_backpressure, idleMs: server.idle_timeout * 1000, pingMs: server.ping_interval * 1000 },
      intervalMs: server.backpressure_check_interval * 1000,
      counters,
      fail,
      alsoSweep: (now) => this.admission.sweepAddresses(now),
    });
  }

  start(): void {
    this.installCrashHandlers();
    this.channel.onMessage((message) => {
      if (message.type === 'shutdown') this.stop(message.code, message.reason, message.graceMs);
      else if (message.type === 'crash') setTimeout(() => { throw new Error(message.reason); });
      else if (message.type === 'stall') stall(message.ms);
      else if (message.type === 'processors') this.dispatch.setProcessorTypes(message.types);
      else if (message.type === 'report' && !this.stopping) this.link.metrics(this.metrics.report(this.init.shard));
    });
    this.table.setStatus(this.init.shard, ShardStatus.STARTING);
    const { config, app, admission, dispatch } = this;
    const { server } = config;
    attachAdminRoutes(app, config.admin.token, this.link);
    const httpContext: HttpContext = {
      shard: this.init.shard,
      linkStuckMs: config.monitoring.link_stuck_after * 1000,
      table: this.table,
      cluster: this.cluster,
      version: this.init.version,
      startedAt: Date.now(),
      maxConnections: server.max_connections,
      metricsEnabled: config.monitoring.enable_metrics_collection,
      isStopping: () => this.stopping,
    };
    attachMetricsRoutes(app, {
      token: config.monitoring.token,
      enabled: config.monitoring.enable_metrics_collection,
      snapshot: new SnapshotReader(this.init.metrics, this.init.shards),
      liveStats: () => stats(httpContext),
    });
    attachHttpRoutes(app, httpContext);
    app.ws<Connection>(server.path, {
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
      open: (ws) => admission.open(ws),
      message: (ws, message, isBinary) => dispatch.message(ws, message, isBinary),
      pong: (ws) => pongArrived(ws.getUserData(), this.metrics),
      close: (ws) => {
        admission.close(ws);
        if (this.stopping && this.registry.size === 0) this.finish();
      },
    });
    app.listen(server.host, this.init.port, (listenSocket) => {
      if (!listenSocket) {
        this.log.error({ code: 'E_STARTUP', host: server.host, port: this.init.port }, 'cannot listen');
        this.channel.post({ type: 'listen-failed', host: server.host, port: this.init.port });
        this.channel.close();
        return;
      }
      this.listenSocket = listenSocket;
      const port = uWS.us_socket_local_port(listenSocket);
      this.cross.start();
      this.sweeper.start();
      if (config.monitoring.enable_metrics_collection) this.metrics.monitorEventLoop();
      this.gaugeTimer = setInterval(() => this.publishLinkGauges(), LINK_GAUGE_MS);
      this.table.setStatus(this.init.shard, ShardStatus.UP);
      this.log.info({ port }, 'shard started');
      this.channel.post({ type: 'listening', port });
    });
  }

  /**
   * The one way a shard stops, asked to (shutdown) or not (crash): stop accepting, close
   * every socket with `code`, and cut those whose clients ignore the close handshake for
   * `graceMs`. Once the last socket is gone, finish().
   */
  private stop(code: number, reason: string, graceMs: number): void {
    if (this.stopping) return;
    this.stopping = true;
    this.table.setStatus(this.init.shard, ShardStatus.STOPPING);
    if (this.listenSocket) uWS.us_listen_socket_close(this.listenSocket);
    this.listenSocket = null;
    this.cross.stop();
    this.link.stop();
    this.sweeper.stop();
    this.metrics.stop();
    if (this.gaugeTimer) clearInterval(this.gaugeTimer);
    this.gaugeTimer = null;
    for (const ws of this.registry.sockets) ws.end(code, reason);
    if (this.registry.size === 0) return this.finish();
    this.graceTimer = setTimeout(() => this.forceClose(), graceMs);
  }

  /** Only this thread knows its writers' overflow; the primary publishes the rest of each link's state. */
  private publishLinkGauges(): void {
    const { table, link, cross } = this;
    table.setLinkOverflow(this.init.shard, Link.TO_BROKER, link.backlog, link.oldestQueuedAt);
    table.setLinkOverflow(this.init.shard, Link.TO_SHARDS, cross.backlog, cross.oldestQueuedAt);
  }

  private forceClose(): void {
    for (const ws of [...this.registry.sockets]) ws.close();
    this.finish();
  }

  /**
   * Every socket is closed. The thread now ends on its own once uWS has released the last
   * socket: process.exit() here could tear the loop down under a socket uWS is still
   * closing (a segfault in us_internal_dispatch_ready_poll), and exiting with sockets open
   * aborts the whole process.
   */
  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = null;
    this.table.setStatus(this.init.shard, ShardStatus.DOWN);
    this.log.info({ exitCode: this.exitCode }, 'shard stopped');
    this.channel.post({ type: 'stopped' });
    this.channel.close();
    process.exitCode = this.exitCode;
  }

  /**
   * A bug must not take the process down: close this shard's sockets (an exit with uWS
   * sockets open would abort every thread), exit 1, and let the primary start a new one.
   */
  private installCrashHandlers(): void {
    const crash = (err: unknown): void => {
      const error = err instanceof Error ? err : new Error(String(err));
      this.log.fatal({ code: 'E_INTERNAL', err: error }, 'shard crashed');
      this.channel.post({ type: 'fatal', message: error.message, stack: error.stack });
      this.exitCode = 1;
      this.stop(CloseCodes.SERVICE_RESTART, 'shard restarting', CRASH_GRACE_MS);
    };
    process.on('uncaughtException', crash);
    process.on('unhandledRejection', crash);
  }
}

/** Fault injection: keeps the thread busy, as a long GC pause or a hot loop would. */
function stall(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until);
}

/**
 * One acceptor thread's life: it builds its parts, listens on the shared port
 * (SO_REUSEPORT), and stops by one sequence whether the primary asked or the shard crashed.
 * What it does meanwhile lives in its parts: routes.ts (what the port answers, to whom each
 * socket event goes), admission.ts (upgrade and identity), dispatch.ts (client frames),
 * broker-link.ts (the broker), cross-shard.ts (the other shards), sweep.ts (idle, pings, slow
 * consumers).
 */
import { performance } from 'node:perf_hooks';
import { Authenticator } from '../auth/identity.js';
import { Codec, codecSettings } from '../codec/codec.js';
import { checkTlsFiles } from '../config/tls-files.js';
import { Latency } from '../metrics/latencies.js';
import { ThreadMetrics } from '../metrics/thread-metrics.js';
import { CloseCodes } from '../protocol/errors.js';
import { MAX_ACK_IDS } from '../protocol/frames.js';
import { InterestTable } from '../shared/interest-table.js';
import { ClusterState } from '../shared/cluster-state.js';
import { HistoryPatterns } from '../shared/history-patterns.js';
import { ShardStatus, ShardTable } from '../shared/shard-table.js';
import { Counter } from '../shared/shard-counters.js';
import type { PrimaryToShard, ShardInit, ShardToPrimary } from '../shared/thread-messages.js';
import { createLogger, flushLogs, type Logger } from '../util/logger.js';
import { createApp, type TemplatedApp } from '../util/uws.js';
import { Admission } from './admission.js';
import { fromRingPayload } from './broadcast.js';
import { BrokerLink } from './broker-link.js';
import { Backpressure } from './backpressure.js';
import { RateLimiter, type Connection } from './connection.js';
import { CrossShard } from './cross-shard.js';
import { Dispatcher } from './dispatch.js';
import { failer } from './fail.js';
import { GroupOps } from './group-ops.js';
import { LocalGroups } from './groups.js';
import { ipLimitsPerShard } from './ip-limits.js';
import { Listener } from './listener.js';
import { Out } from './out.js';
import { OverflowGauges } from './overflow-gauges.js';
import { ConnectionRegistry } from './registry.js';
import { attachRoutes } from './routes.js';
import { Sweeper } from './sweep.js';

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
/** Step of a drain's spread: sockets due by then are closed together. */
const SPREAD_TICK_MS = 10;
/**
 * How long the sockets ended last (their close frame sent) are left open before the App closes
 * every socket (within the grace): a client still sending when its close frame left has bytes
 * in our receive queue, and a socket closed with unread bytes is reset, which threw away the
 * close frame and the frames before it that the client had not read yet (acks of stored sends,
 * which it then sent again). A client that reads its close frame stops sending and closes its
 * side within a round trip; uWS then lets go of the socket itself. Only a connection heard from
 * within LINGER_MS is waited for: a quiet one has nothing in flight to be reset.
 */
const LINGER_MS = 1000;

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
  private readonly groupOps: GroupOps;
  private readonly sweeper: Sweeper;
  /** What waits in this shard's rings' overflow, into the shared table (/health). */
  private readonly overflowGauges: OverflowGauges;
  /** Codec work too large for the loop goes to this shard's pool (src/codec). */
  private readonly codec: Codec;
  private readonly listener: Listener;
  private graceTimer: NodeJS.Timeout | null = null;
  /** No longer accepting (a drain's first step), or stopping. */
  private draining = false;
  /** listenAt() ran: a second `listen` message is ignored. */
  private listenRequested = false;
  private stopping = false;
  /** Every socket left has been sent its close: the last one to go finishes the thread. */
  private closingAll = false;
  private spreadTimer: NodeJS.Timeout | null = null;
  private finished = false;
  /** finish() closes the App's sockets no earlier than this (epoch ms): see LINGER_MS. */
  private lingerUntil = 0;
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
    const out = new Out(counters, this.log);
    const fail = failer(counters, out);
    const codec = (this.codec = new Codec(codecSettings(performance), {
      offloaded: () => counters[Counter.codec_offloaded]!++,
      inlineFull: () => counters[Counter.codec_inline_full]!++,
    }));
    const table = this.table;
    const binary = {
      anywhere: () => table.binaryConnections() > 0,
      elsewhere: () => table.binaryConnections() - (counters[Counter.binary_opened]! - counters[Counter.binary_closed]!) > 0,
    };
    // Ids never repeat: instance (this process run), shard, generation (this start of the
    // shard), then `s` for a session or `m` for a message, and a sequence.
    const idPrefix = `${init.instance}.${init.shard}.${init.generation.toString(36)}.`;
    // A restart reads the TLS files again, and uWS would say only "App construction failed" of a
    // file deleted or half-replaced since the start: the check names the file instead.
    if (init.generation > 0) checkTlsFiles(config.server.tls);
    this.app = createApp(config.server.tls);
    this.listener = new Listener(this.app, server.host, this.log);
    const compressFrom = performance.enable_compression ? performance.compression_threshold : Infinity;
    const groups = new LocalGroups(this.app, counters, compressFrom);
    const { registry, metrics } = this;
    this.link = new BrokerLink({
      shard: init.shard,
      welcomeLimits: { messagesPerSecond: limits.messages_per_second, burst: limits.burst, ackIds: MAX_ACK_IDS },
      brokerSlot: init.shards,
      doorbells: init.doorbells,
      toBroker: init.toBroker,
      fromBroker: init.fromBroker,
      registry,
      groups,
      out,
      codec,
      counters,
      fail,
      latency: metrics,
      welcomed: (ws) => this.dispatch.resume(ws),
      report: () => {
        if (!this.closingAll) this.link.metrics(this.metrics.report(this.init.shard));
      },
      groupOps: { joined: (f) => this.groupOps.joined(f), left: (f) => this.groupOps.left(f), livePub: (group, message) => this.groupOps.livePub(group, message) },
      log: this.log,
      overflowed: () => this.overflowGauges.queued(),
      backlogLimit: performance.ring_overflow_bytes,
    });
    const history = new HistoryPatterns(config.history);
    const backpressure = new Backpressure(() => this.link.backlog, () => this.link.backlogEmptied, performance.ring_overflow_bytes);
    this.groupOps = new GroupOps({
      patterns: history,
      clustered: this.cluster.clustered,
      interest,
      maxGroupsPerConnection: limits.max_groups_per_connection,
      backpressure,
      link: this.link,
      registry,
      fail,
      out,
    });
    this.cross = new CrossShard({
      self: init.shard,
      table: this.table,
      interest: interestTable,
      doorbells: init.doorbells,
      inbound: init.inbound,
      outbound: init.outbound,
      counters,
      log: this.log,
      overflowed: () => this.overflowGauges.queued(),
      onPub: (topic, payload, receivedAt) => {
        if (groups.publish(topic, fromRingPayload(codec, payload)) > 0) metrics.since(Latency.pub, receivedAt);
      },
      alsoDrain: (budget) => this.link.drain(budget),
    });
    this.overflowGauges = new OverflowGauges({ shard: init.shard, table: this.table, toBroker: this.link, toShards: this.cross });
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
      trustedProxies: server.trusted_proxies,
      ipv6PrefixLength: limits.ipv6_prefix_length,
      registry,
      interest,
      link: this.link,
      brokerBackpressure: backpressure,
      fail,
      out,
      log: this.log,
      isStopping: () => this.draining,
    });
    this.dispatch = new Dispatcher({
      limits: {
        maxPayload: server.max_payload,
        messagesPerSecond: limits.messages_per_second,
        rateViolationsBeforeClose: limits.rate_violations_before_close,
        badFramesBeforeClose: limits.bad_frames_before_close,
        requireMembership: config.groups.require_membership,
      },
      backpressure,
      pubBackpressure: new Backpressure(() => this.cross.fullestBacklog(), () => this.cross.fullestEmptied(), performance.ring_overflow_bytes),
      limiter: new RateLimiter(limits.messages_per_second, limits.burst),
      counters,
      log: this.log,
      fail,
      msgIdPrefix: `${idPrefix}m`,
      admission: this.admission,
      link: this.link,
      cross: this.cross,
      groups,
      cluster: this.cluster.clustered ? this.cluster : null,
      groupOps: this.groupOps,
      history,
      processorTypes: init.processorTypes,
      latency: metrics,
      codec,
      out,
      binary,
    });
    this.sweeper = new Sweeper({
      connections: registry.connections,
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
      if (message.type === 'shutdown') this.stop(message.code, message.reason, message.graceMs, message.spreadMs);
      else if (message.type === 'stop-accepting') this.stopAccepting();
      else if (message.type === 'crash') setTimeout(() => { throw new Error(message.reason); });
      else if (message.type === 'stall') stall(message.ms);
      else if (message.type === 'processors') this.dispatch.setProcessorTypes(message.types);
      else if (message.type === 'listen') this.listenAt(message.port);
      else if (message.type === 'accepting') this.listener.setAccepting(message.on);
    });
    this.table.setStatus(this.init.shard, ShardStatus.STARTING);
    const { config, app, table, cluster, link, admission, dispatch, groupOps, sweeper, metrics } = this;
    const isStopping = (): boolean => this.draining;
    const closed = (): void => {
      if (this.closingAll && this.registry.size === 0) this.finish();
    };
    attachRoutes({ app, config, init: this.init, table, cluster, link, admission, dispatch, groupOps, sweeper, metrics, isStopping, closed });
    if (this.init.port !== null) this.listenAt(this.init.port);
  }

  /** Opens the port (0: this shard, the first, picks one and binds it at once: src/util/free-port.ts) and starts serving. */
  private listenAt(wanted: number): void {
    if (this.listenRequested || this.draining) return;
    this.listenRequested = true;
    const { host } = this.config.server;
    // A shard started (or restarted) while the open-file guard says no binds its port, not accepting yet.
    void this.listener.open(wanted, !this.table.accepting()).then((port) => {
      if (port === null) {
        this.log.error({ code: 'E_STARTUP', host, port: wanted }, 'cannot listen');
        this.channel.post({ type: 'listen-failed', host, port: wanted });
        this.channel.close();
        return;
      }
      this.cross.start();
      this.sweeper.start();
      if (this.config.monitoring.enable_metrics_collection) this.metrics.monitorEventLoop();
      this.table.setStatus(this.init.shard, ShardStatus.UP);
      this.log.info({ port }, 'shard started');
      this.channel.post({ type: 'listening', port });
    });
  }

  /**
   * A drain's first step: no new connections (with the listen socket gone the kernel gives
   * them to the other process on the port: a pm2 reload's new one), while the open ones are
   * served as before. /health says stopping.
   */
  private stopAccepting(): void {
    this.draining = true;
    this.listener.close();
  }

  /**
   * The one way a shard stops, asked to (shutdown) or not (crash): stop accepting, close
   * every socket with `code`, spread evenly over `spreadMs` (a drain: clients reconnecting
   * elsewhere do not all come at once), served as before until its turn; then cut those whose
   * clients ignore the close handshake for `graceMs`. Once the last socket is gone, finish().
   */
  private stop(code: number, reason: string, graceMs: number, spreadMs = 0): void {
    if (this.stopping) return;
    this.stopping = true;
    this.stopAccepting();
    const conns = [...this.registry.connections];
    if (spreadMs <= 0 || conns.length === 0) return this.closeAll(code, reason, graceMs);
    const started = Date.now();
    let closed = 0;
    const step = (): void => {
      const due = Math.min(conns.length, Math.ceil((conns.length * (Date.now() - started)) / spreadMs));
      // A socket that closed on its own since may not be touched.
      for (; closed < due; closed++) if (!conns[closed]!.closed) this.end(conns[closed]!, code, reason, graceMs);
      if (closed < conns.length) this.spreadTimer = setTimeout(step, SPREAD_TICK_MS);
      else this.closeAll(code, reason, graceMs);
    };
    this.spreadTimer = setTimeout(step, SPREAD_TICK_MS);
  }

  /** Stops the shard's parts and closes whatever socket is left. */
  private closeAll(code: number, reason: string, graceMs: number): void {
    this.closingAll = true;
    if (this.spreadTimer) clearTimeout(this.spreadTimer);
    this.spreadTimer = null;
    this.table.setStatus(this.init.shard, ShardStatus.STOPPING);
    this.cross.stop();
    this.link.stop();
    this.sweeper.stop();
    this.metrics.stop();
    this.overflowGauges.stop();
    for (const conn of [...this.registry.connections]) this.end(conn, code, reason, graceMs);
    if (this.registry.size === 0) return this.finish();
    this.graceTimer = setTimeout(() => this.forceClose(), graceMs);
  }

  /** Sends `conn` its close frame; its socket lingers (LINGER_MS, within the grace) if it was sending. */
  private end(conn: Connection, code: number, reason: string, graceMs: number): void {
    if (performance.now() - conn.lastSeen < LINGER_MS) this.lingerUntil = Date.now() + Math.min(LINGER_MS, graceMs);
    conn.ws!.end(code, reason);
  }

  private forceClose(): void {
    for (const conn of [...this.registry.connections]) if (!conn.closed) conn.ws!.close();
    this.lingerUntil = 0; // the grace is spent
    this.finish();
  }

  /**
   * Every connection is closed; the App's sockets go after the linger. The thread then ends on
   * its own once uWS has released the last socket: process.exit() here could tear the loop
   * down under a socket uWS is still closing (a segfault in us_internal_dispatch_ready_poll),
   * and exiting with sockets open aborts the whole process.
   */
  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = null;
    this.table.setStatus(this.init.shard, ShardStatus.DOWN);
    // Its threads are idle-unref'd, but a task still running would hold this thread up.
    void this.codec.close().catch((err: unknown) => this.log.error({ code: 'E_INTERNAL', err }, 'codec pool did not close'));
    const linger = this.lingerUntil - Date.now();
    if (linger > 0) setTimeout(() => this.closeApp(), linger);
    else this.closeApp();
  }

  private closeApp(): void {
    // HTTP keep-alive connections (a scraper, a health check) would keep the thread alive until
    // the shutdown deadline, and a thread ended with uWS sockets open aborts the process. The
    // App's close() (in uWS.js, not in its typings) closes every socket it still has.
    (this.app as unknown as { close(): void }).close();
    this.log.info({ exitCode: this.exitCode }, 'shard stopped');
    flushLogs();
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
      // A crash mid-drain cuts the spread short.
      if (!this.stopping) this.stop(CloseCodes.SERVICE_RESTART, 'shard restarting', CRASH_GRACE_MS);
      else if (!this.closingAll) this.closeAll(CloseCodes.SERVICE_RESTART, 'shard restarting', CRASH_GRACE_MS);
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

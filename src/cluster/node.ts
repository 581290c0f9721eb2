/**
 * This process as a node of a cluster (cluster.redis_url): what the broker is on one process,
 * with Redis as the store and the bus. It takes the shards' records (the same link, the same
 * records as the LMDB broker), publishes pubs for the other nodes, keeps presence in Redis,
 * and delivers what other nodes route here. The embedding API (send, publish, processors,
 * strategies) works as on one process.
 *
 * While Redis is unreachable the node serves its own clients: pubs reach this node's members
 * (their publishers get E_CLUSTER_UNAVAILABLE rather than an ack), joins and presence are kept
 * locally and written again once Redis is back; send, any and ack are refused with
 * E_CLUSTER_UNAVAILABLE. /health says `degraded`, and the log says it once per change.
 * Group presence, history and their ops: groups.ts; history kept in Redis: history.ts; pubs
 * across nodes: pubs.ts.
 */
import { AnswerBudget, replayBytesOf } from '../broker/answer-budget.js';
import type { BrokerStats, Processor, SendOptions } from '../broker/broker.js';
import { checkPublishArgs, checkSendOptions, dataJsonOf } from '../broker/embedding-checks.js';
import { MessageIds } from '../broker/ids.js';
import { Processors } from '../broker/processors.js';
import type { RingShardLink } from '../broker/ring-link.js';
import type { Config } from '../config/schema.js';
import { typeOfData } from '../link/records.js';
import type { LatencyRecorder } from '../metrics/latencies.js';
import { OcsError, type ErrorCode } from '../protocol/errors.js';
import { ANY_STRATEGIES, SERVER_SENDER, type AnyStrategy } from '../protocol/frames.js';
import { ClusterStatus, type ClusterState } from '../shared/cluster-state.js';
import type { StoreHealth } from '../store/store.js';
import type { Logger } from '../util/logger.js';
import { ACKS } from './ack-script.js';
import { Channels } from './channels.js';
import { RedisDeadLetters } from './dead-letters.js';
import { NodeRecords } from './node-records.js';
import { ClusterGroups } from './groups.js';
import { ClusterHistory } from './history.js';
import { ClusterIntake, type Reply } from './intake.js';
import { ClusterMembers } from './members.js';
import { Keys } from './keys.js';
import { ClusterMessaging } from './messaging.js';
import { ClusterPresence, LocalPresence } from './presence.js';
import { ClusterPubs } from './pubs.js';
import { atMost, RedisLink, timedOut } from './redis.js';
import { PUMP_GROUP, PUMP_MARKED, ROUTE_ANY } from './route-any-script.js';
import { ScriptRunner } from './script-runner.js';
import { RECLAIM } from './reclaim-script.js';
import { DEAD_ON_ARRIVAL, STORE, SWEEP } from './scripts.js';
import { Sweeps } from './sweeps.js';
import { indexWaiting, OlderVersionIndexing } from './waiting-index.js';
import { CONNECT, CONNECT_GONE, CONNECT_PAGE, PUMP, ROUTE_USER } from './window-scripts.js';
import { countDrops, newClusterStats, type ClusterStats } from './stats.js';

export interface ClusterNodeOptions {
  config: Config;
  /** This process run's id: the node's id in the cluster, and the prefix of its message ids. */
  instance: string;
  log: Logger;
  link: RingShardLink;
  state: ClusterState;
  /** Tell every shard which `data.type` values must detour through the broker. */
  publishProcessorTypes(types: string[]): void;
  /** Redis writable or not, as /health shows the store. */
  storeHealthChanged(health: Readonly<StoreHealth>): void;
  /** Where the send, ack and commit latencies of stored messages are recorded (as the LMDB broker does). */
  latency?: LatencyRecorder;
  /** Whether a shard of this node holds records its ring to the node had no room for yet: its ack deadlines are then put off (SWEEP). */
  behind?: () => boolean;
}

/**
 * In Redis's script cache before the node takes traffic (a restarted Redis has none): a script
 * it does not know costs a NOSCRIPT round trip, and one whose NOSCRIPT comes after its command
 * timed out is never run (a send stored after a freeze would not be).
 */
const STORE_SCRIPTS = [STORE, ROUTE_USER, ROUTE_ANY, PUMP_GROUP, PUMP_MARKED, CONNECT, CONNECT_PAGE, CONNECT_GONE, PUMP, ACKS, SWEEP, DEAD_ON_ARRIVAL, RECLAIM];

/** What a node's stop gives Redis for its goodbye (leaving the cluster, QUIT). */
const FAREWELL_MS = 1000;

export class ClusterNode {
  readonly node: string;
  private readonly stats_: ClusterStats = newClusterStats();
  private readonly redis: RedisLink;
  private readonly scripts: ScriptRunner;
  private readonly keys: Keys;
  private readonly local = new LocalPresence();
  private readonly clusterPresence: ClusterPresence;
  private readonly channels: Channels;
  private readonly intake: ClusterIntake;
  private readonly messaging: ClusterMessaging;
  private readonly pubs: ClusterPubs;
  private readonly processors: Processors;
  private readonly groups: ClusterGroups;
  private readonly history: ClusterHistory;
  private readonly deadLetters: RedisDeadLetters;
  private readonly ids: MessageIds;
  private readonly members: ClusterMembers;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private readonly sweeps = new Sweeps(() => this.messaging.sweep(), () => this.up && !this.draining);
  private stopped = false;
  /** The drain began (pauseDelivery): this node has left the cluster and writes no presence. */
  private draining = false;
  /**
   * The resync after an outage has taken its snapshot of this node's members (rewrite): what
   * they do from then on is written at once, behind the resync's own writes, though the node is
   * not up yet; else a join, leave or close in that window was never written.
   */
  private presenceResynced = false;
  private failedWrites = 0;
  private readonly olderVersionIndexing: OlderVersionIndexing;

  constructor(private readonly options: ClusterNodeOptions) {
    const { config, instance, log } = options;
    this.node = instance;
    this.keys = new Keys(config.cluster.key_prefix);
    this.processors = new Processors(config.websocket.delivery.processor_timeout * 1000);
    this.ids = new MessageIds(instance);
    this.redis = new RedisLink({ config: config.cluster, log, onUp: () => this.resync(true), onDown: () => this.down() });
    const commands = this.redis.commands;
    const scripts = (this.scripts = new ScriptRunner(commands));
    this.deadLetters = new RedisDeadLetters(commands, scripts, this.keys);
    this.olderVersionIndexing = new OlderVersionIndexing(() => [indexWaiting(commands, scripts, this.keys.prefix), this.deadLetters.indexAges()], log, () => this.stopped);
    this.clusterPresence = new ClusterPresence(commands, scripts, this.keys, this.node, config.cluster.presence_ttl * 1000);
    // One budget for a connection's presence, history and replay answers, on its node only: no other node answers it.
    const answers = new AnswerBudget(replayBytesOf(config));
    this.history = new ClusterHistory({ config, scripts, keys: this.keys, node: this.node, link: options.link, log, stats: this.stats_, answers, up: () => this.up, hasMembers: (group) => this.local.byGroup.has(group), runId: () => this.redis.runId() });
    this.groups = new ClusterGroups({ config, link: options.link, log, presence: this.clusterPresence, history: this.history, answers, up: () => this.up });
    this.channels = new Channels(this.redis.subscriber, commands, this.keys, this.node, {
      groupPub: (group, frame) => this.pubs.received(group, frame),
      presence: (group, record) => void (this.groups.events.received(group, record) || this.stats_.cluster_malformed++),
      nodeRecord: (kind, target, id, frame, receivedAt, deadline) => this.messaging.claimed.nodeRecord(kind, target, id, frame, receivedAt, deadline),
      userBatch: (user, entries) => this.messaging.claimed.userBatch(user, entries),
      historyJoined: (fields) => this.history.joinAnswered(fields),
      malformed: () => this.stats_.cluster_malformed++,
    });
    // What the intake and the messaging both take.
    const shared = {
      config,
      scripts,
      link: options.link,
      stats: this.stats_,
      log,
      up: () => this.up,
      dueAt: (at: number) => this.sweeps.at(at),
      deadDropped: countDrops(this.stats_, log, config.store),
      ...(options.latency ? { latency: options.latency } : {}),
    };
    const behind = options.behind ?? (() => false);
    this.messaging = new ClusterMessaging({ ...shared, node: this.node, channels: this.channels, presence: this.clusterPresence, local: this.local, behind });
    this.intake = new ClusterIntake({ ...shared, ids: this.ids, processors: this.processors, route: (id, target, receivedAt) => this.messaging.route(id, target, receivedAt), pump: (user) => this.messaging.pump(user) });
    this.pubs = new ClusterPubs({ link: options.link, channels: this.channels, history: this.history, processors: this.processors, intake: this.intake, stats: this.stats_, up: () => this.up });
    this.members = new ClusterMembers({
      local: this.local,
      channels: this.channels,
      messaging: this.messaging,
      presence: this.clusterPresence,
      events: this.groups.events,
      left: (group) => this.history.left(group),
      log,
      writesPresence: () => (this.up || this.presenceResynced) && !this.draining,
    });
  }

  get up(): boolean {
    return this.options.state.up;
  }

  get stats(): Readonly<BrokerStats> {
    return this.stats_;
  }

  /** Cross-node presence, for the embedding API. */
  get presence(): ClusterPresence {
    return this.clusterPresence;
  }

  /** Connects (waiting at most command_timeout: a node whose Redis is down starts degraded) and starts listening to the shards. */
  async start(): Promise<void> {
    const { config, link, state, log } = this.options;
    state.set(ClusterStatus.CONNECTING);
    const { local, intake, messaging, members, groups, pubs, deadLetters, ids } = this;
    const records = new NodeRecords({ config, link, log, stats: this.stats_, local, intake, messaging, members, groups, pubs, deadLetters, ids, draining: () => this.draining });
    link.listen((shard, kind, fields) => records.onRecord(shard, kind, fields));
    await this.redis.connect(config.cluster.command_timeout * 1000);
    const ttl = config.cluster.presence_ttl * 1000;
    this.heartbeatTimer = setInterval(() => this.heartbeat(), Math.max(200, ttl / 3));
    this.sweeps.start(config.cluster.sweep_interval * 1000);
    // A resync may be running (Redis answered): give it its round trips before the shards start.
    for (let i = 0; i < 100 && this.redis.state === 'up' && !this.up; i++) await new Promise((r) => setTimeout(r, 10));
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // Before the link stops: their senders are answered.
    this.processors.stop('the node stopped before the processor for this message answered: not stored, not sent');
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.sweeps.stop();
    this.intake.stop();
    // After the hand-outs held for records (a command timeout at most): else their records
    // never reach the user's other nodes, which got those messages at their ack deadlines.
    await this.messaging.claimed.records.settled();
    this.messaging.handOutHeld();
    this.options.link.stop();
    this.groups.stop();
    this.messaging.connections.stopping();
    // Forgotten at once rather than after presence_ttl: this node's users are gone now. A
    // farewell, not a duty (the others forget it after presence_ttl anyway): a frozen Redis
    // holds the stop FAREWELL_MS at most, not command timeouts (past shutdown_timeout: SIGKILL).
    const deadline = Date.now() + FAREWELL_MS;
    // Connected but not yet up, its resync's writes may be under way: the forget goes after them.
    if (this.redis.state === 'up') await atMost(this.clusterPresence.leaveCluster(), FAREWELL_MS);
    await this.redis.stop(Math.max(0, deadline - Date.now()));
  }

  depth(): { stored: number; inflight: number } {
    return { stored: this.stats_.stored, inflight: this.messaging.claimed.inflight() };
  }

  /**
   * The drain before a pm2 reload or a stop: this node leaves the cluster at once (its heartbeat
   * and presence go, as when it stops), so no node routes a stored message to its connections any
   * more: what comes for its users waits in Redis for the node they reconnect to (CONNECT claims
   * it there). Sends are still stored and acks still taken; pubs still come and go until the
   * connections close; the other nodes sweep what is due.
   */
  pauseDelivery(): void {
    if (this.draining) return;
    this.draining = true;
    this.messaging.connections.drained();
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.sweeps.stop();
    this.heartbeatTimer = null;
    // Unreachable: the others forget it after presence_ttl; mid-resync, the resync's end leaves again.
    if (this.redis.state === 'up') this.clusterPresence.leaveCluster().catch(() => {});
  }

  // --- embedding API ---------------------------------------------------------------------

  send(user: string, data: unknown, options: SendOptions = {}): Promise<string> {
    return new Promise((resolve, reject) => {
      const { pri, at, from } = checkSendOptions(user, options, SERVER_SENDER);
      const dataJson = dataJsonOf(data);
      if (this.stopped) throw new OcsError('E_CLUSTER_UNAVAILABLE', 'the node has stopped: not stored');
      const reply: Reply = { ok: resolve, fail: (code, message) => reject(new OcsError(code, message)) };
      this.intake.accept({ target: `u:${user}`, from, group: null, data: dataJson, pri, at, strategy: null }, typeOfData(data), reply, false);
    });
  }

  publish(group: string, data: unknown, options: { pri?: number; from?: string } = {}): string {
    const { pri, from, dataJson } = checkPublishArgs(group, data, options, SERVER_SENDER, (json) => this.intake.oversize(json));
    const id = this.ids.nextPubId();
    const dropped = (code: ErrorCode, message: string): void => {
      // Not logged per message while Redis is out: the outage is logged once, the pub counted lost (cluster_pubs_lost).
      if (code !== 'E_CLUSTER_UNAVAILABLE' && code !== 'E_OVERLOADED') this.options.log.warn({ code, group }, `publish dropped: ${message}`);
    };
    this.pubs.publish(id, from, group, dataJson, pri, typeOfData(data), { ok: () => {}, fail: dropped });
    return id;
  }

  setGroupStrategy(group: string, strategy: AnyStrategy): void {
    if (!ANY_STRATEGIES.includes(strategy)) throw new TypeError(`strategy must be one of ${ANY_STRATEGIES.join(', ')}`);
    // For every node: the routes read it from Redis.
    this.redis.commands.hset(`${this.keys.prefix}strategies`, group, strategy).catch((err: unknown) => this.options.log.error({ code: 'E_CLUSTER_UNAVAILABLE', err, group }, 'cluster: the group strategy could not be stored'));
  }

  registerProcessor(type: string, processor: Processor): void {
    this.processors.register(type, processor);
    this.options.publishProcessorTypes(this.processorTypes());
  }

  processorTypes(): string[] {
    return this.processors.types();
  }

  /** A shard died: its connections are gone. */
  shardDown(shard: number): void {
    this.options.link.shardDown(shard);
    for (const sid of this.local.ofShard(shard)) this.members.offline(sid);
  }

  // --- Redis comes and goes ------------------------------------------------------------------

  /**
   * Redis is reachable (again): channels, presence and what waited for this node's users, then
   * `up`. After an outage the node's history groups resume (it heard nothing meanwhile); not
   * when only its presence was forgotten (it heard everything, and takes joins meanwhile).
   */
  private resync(afterOutage: boolean): void {
    const { state, log } = this.options;
    if (this.draining) {
      // Gone from the cluster: it only hears its groups again until its connections close.
      this.channels
        .resubscribe()
        .then(() => this.history.resume())
        .then(
          () => this.redis.state === 'up' && state.set(ClusterStatus.UP),
          () => {},
        );
      return;
    }
    const snapshot = (): void => void (this.presenceResynced = true);
    Promise.all([this.channels.resubscribe(), this.clusterPresence.rewrite(this.local, snapshot), this.history.prepare(), this.scripts.load(STORE_SCRIPTS)])
      // Before joins and pubs are taken (up): no join's answer may come before a resume's.
      .then(() => (afterOutage ? this.history.resume() : undefined))
      .then(() => (this.draining ? undefined : this.clusterPresence.heartbeat()))
      .then(
        () => {
          if (this.redis.state !== 'up' || this.stopped) return;
          state.set(ClusterStatus.UP);
          this.options.storeHealthChanged({ writable: true, lastError: null, failedWrites: this.failedWrites });
          if (this.draining) {
            // The drain began during the resync, which wrote this node back: it leaves again,
            // and claims nothing for its users; what a timed-out store may have kept is routed.
            this.clusterPresence.leaveCluster().catch(() => {});
            this.intake.routeMaybeStored();
            return;
          }
          state.setNodesAlive(this.clusterPresence.alive.size);
          this.messaging.rescan();
          this.intake.routeMaybeStored();
          this.olderVersionIndexing.runOnce();
        },
        (err: unknown) => {
          log.error({ code: 'E_CLUSTER_UNAVAILABLE', err }, 'cluster: resynchronising with Redis failed; reconnecting to try again');
          // With both connections open nothing would reconnect, and the heartbeat does not run
          // while the node is not up: it stayed degraded for good. Dropping them starts over.
          this.redis.unresponsive(`resynchronising: ${(err as Error).message}`);
        },
      );
  }

  private down(): void {
    this.messaging.connections.cutOff();
    this.presenceResynced = false;
    this.failedWrites++;
    this.history.redisLost();
    this.options.state.set(ClusterStatus.DOWN);
    this.options.storeHealthChanged({ writable: false, lastError: `Redis unreachable: ${this.redis.error || 'connection closed'}`, failedWrites: this.failedWrites });
  }

  private heartbeat(): void {
    if (!this.up) return;
    this.clusterPresence.heartbeat().then(
      (forgotten) => {
        this.options.state.setNodesAlive(this.clusterPresence.alive.size);
        if (forgotten && !this.draining && !this.stopped) {
          this.messaging.connections.cutOff(); // routes left this node out meanwhile
          this.resync(false); // its members and channels, again
        }
      },
      (err: unknown) => {
        // Gone, the link has reported it; open but silent past command_timeout, it is made to.
        if (timedOut(err)) this.redis.unresponsive(`heartbeat: ${(err as Error).message}`);
      },
    );
  }
}

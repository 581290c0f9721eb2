/**
 * The primary thread: allocates the shared memory, starts one shard thread per acceptor,
 * restarts a shard that dies, samples counters, and drives a graceful shutdown.
 * It holds no sockets: the shards own the port.
 */
import { randomBytes } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import type { Processor, SendOptions, BrokerStats } from '../broker/broker.js';
import { Codec, codecSettings } from '../codec/codec.js';
import { RingShardLink } from '../broker/ring-link.js';
import type { LoadedConfig } from '../config/load.js';
import { MetricsHub } from '../metrics/hub.js';
import { createSnapshotBuffer, SnapshotWriter } from '../metrics/snapshot.js';
import type { AnyStrategy } from '../protocol/frames.js';
import { readOpenFileLimit } from '../ops/host.js';
import { MessageStore } from '../store/store.js';
import type { ClusterNode } from '../cluster/node.js';
import { NO_CLUSTER_COUNTERS } from '../cluster/stats.js';
import { ClusterState, createClusterState } from '../shared/cluster-state.js';
import { CloseCodes, OcsError } from '../protocol/errors.js';
import { createDoorbells } from '../rings/doorbell.js';
import { createRingBuffer } from '../rings/ring.js';
import { createInterestTable, InterestTable } from '../shared/interest-table.js';
import { createShardTable, Link, ShardStatus, ShardTable, type ShardTableBuffers } from '../shared/shard-table.js';
import type { PrimaryToShard, ShardInit, ShardToPrimary } from '../shared/thread-messages.js';
import type { Logger } from '../util/logger.js';
import { LinkMonitor } from './link-monitor.js';
import { OpenFileGuard } from './open-file-guard.js';
import { startMessaging, type MessagingParts } from './messaging.js';
import { StatsSampler } from './stats-sampler.js';

const SHARD_ENTRY = new URL('../../workers/shard.js', import.meta.url);
/** Restart back-off: doubles per crash in a row, reset after a shard stays up this long. */
const RESTART_MIN_MS = 100;
const RESTART_MAX_MS = 5000;
const STABLE_MS = 30_000;
/** Longest a drain waits for the deliveries in flight to be acknowledged before it closes their connections. */
const ACK_BARRIER_MS = 1000;
const ACK_BARRIER_POLL_MS = 10;

export interface RunningServer {
  readonly port: number;
  readonly shards: number;
  readonly table: ShardTable;
  /** Whether this process holds the store's lease (delivers what is stored); false while it stands by. */
  readonly ownsStore: boolean;
  /** Stops accepting, closes every socket with 1001, waits for every shard to exit. */
  close(): Promise<void>;
  /**
   * The hand-over (SIGTERM, SIGINT, pm2 reload): stops accepting, lets the deliveries in flight
   * be acknowledged, closes the connections with 1012 spread over server.drain_window, then
   * releases the store for the next process. Resolves once every shard has exited.
   */
  drain(): Promise<void>;
  /** Settles once the server has stopped: 0 after close() or drain(), 1 when it stopped itself (the store lease was lost). */
  readonly stopped: Promise<number>;
  /** Fault injection for tests and chaos drills: shard `index` throws as a bug would. */
  injectShardCrash(index: number): void;
  /** Fault injection: shard `index` is busy for `ms`, as in a long GC pause. */
  injectShardStall(index: number, ms: number): void;
  /** Resolves when shard `index` has been restarted `count` times in all and is up again. */
  whenRestarted(index: number, count: number): Promise<void>;
  /** Publishes to every online member of `group` (at most once, like a client `pub`); returns the message id. */
  publish(group: string, data: unknown, options?: { pri?: number }): string;
  /** Stores a message for `user` (delivered now, on next connection, or at `at`); resolves with its id once stored. */
  send(user: string, data: unknown, options?: SendOptions): Promise<string>;
  /** Runs `processor` on every pub/send/any whose `data.type` is `type`, before routing (see docs/messaging.md). */
  registerProcessor(type: string, processor: Processor): void;
  /** The default `any` strategy of `group` (the seed's set_group_load_balance_strategy). */
  setGroupLoadBalanceStrategy(group: string, strategy: AnyStrategy): void;
  /** Broker counters: accepted, delivered, redelivered, acked, dead-lettered, dropped LOW, queue full. */
  messagingStats(): Readonly<BrokerStats>;
  /** Cluster mode: this node and presence across every live node; null on one process. */
  readonly cluster: ClusterView | null;
}

/** What the embedding API shows of cluster mode (src/cluster/presence.ts). */
export interface ClusterView {
  /** This node's id (the process run's). */
  readonly node: string;
  /** Users online in `group` on the live nodes, with their member connections. Rejects while Redis is unreachable. */
  groupPresence(group: string): Promise<Map<string, number>>;
  /** Connections of `user` on the live nodes, per node id. Rejects while Redis is unreachable. */
  userPresence(user: string): Promise<Map<string, number>>;
}

interface ShardSlot {
  index: number;
  worker: Worker | null;
  restarts: number;
  crashesInARow: number;
  startedAt: number;
  lastFatal: string | null;
  restartTimer: NodeJS.Timeout | null;
}

export async function startServer(loaded: LoadedConfig, log: Logger, version: string): Promise<RunningServer> {
  const { config, shards } = loaded;
  // Prefix of every id this run hands out. The start time makes it new for every process
  // run (on this host's clock); the random part tells apart processes started in the same ms.
  const instance = Date.now().toString(36) + randomBytes(3).toString('hex');
  const tableBuffers = createShardTable(shards);
  const table = new ShardTable(tableBuffers);
  // One bell per shard, and one more (index `shards`) for the broker in this thread.
  const doorbells = createDoorbells(shards + 1);
  const interestBuffer = createInterestTable(shards);
  const interest = new InterestTable(interestBuffer);
  const ringBytes = config.websocket.performance.ring_bytes;
  const toBroker = Array.from({ length: shards }, () => createRingBuffer(ringBytes));
  const fromBroker = Array.from({ length: shards }, () => createRingBuffer(ringBytes));
  const clustered = config.cluster.redis_url !== '';
  const clusterStateBuffer = createClusterState();
  const clusterState = new ClusterState(clusterStateBuffer);
  // Opened before any shard starts: a bad data directory stops the server here, with E_STARTUP.
  // A node of a cluster keeps its messages in Redis instead.
  const store = clustered ? null : await MessageStore.open(config.store.data_dir, config.store.sync, { letters: config.store.max_dead_letters, bytes: config.store.max_dead_letter_bytes });
  // rings[from][to]: one SPSC ring per ordered pair of shards.
  const rings = Array.from({ length: shards }, (_, from) =>
    Array.from({ length: shards }, (_, to) => (from === to ? null : createRingBuffer(config.websocket.performance.ring_bytes))),
  );
  const monitoring = config.websocket.monitoring;
  const snapshotBuffer = createSnapshotBuffer(shards, monitoring.alerts.history);
  const hub: MetricsHub | null = monitoring.enable_metrics_collection
    ? new MetricsHub({
        table,
        monitoring,
        maxConnections: config.websocket.server.max_connections,
        version,
        log,
        snapshot: new SnapshotWriter(snapshotBuffer, shards, monitoring.alerts.history),
        rings: { shardToShard: rings, toBroker, fromBroker },
        broker: () => ({ stats: messagingStats(), depth: broker.depth(), history: messaging.historyStats(), disk: store?.disk() ?? null }),
        // Over the rings (a REPORT record): a shard that stops reading shows in /health as a stuck link.
        requestReports: () => {
          for (const slot of slots) if (table.isUp(slot.index)) link.requestReport(slot.index);
        },
      })
    : null;
  const slots: ShardSlot[] = Array.from({ length: shards }, (_, index) => ({
    index,
    worker: null,
    restarts: 0,
    crashesInARow: 0,
    startedAt: 0,
    lastFatal: null,
    restartTimer: null,
  }));
  let port = config.websocket.server.port;
  let stopping: Promise<void> | null = null;
  let stoppedItself = false;
  let reportStopped: (exitCode: number) => void = () => {};
  const stopped = new Promise<number>((resolve) => (reportStopped = resolve));
  const restartWaiters: Array<{ index: number; count: number; resolve: () => void }> = [];

  const initFor = (index: number, listenPort: number | null): ShardInit => ({
    shard: index,
    shards,
    port: listenPort,
    config: config as ShardInit['config'],
    instance,
    generation: slots[index]!.restarts,
    version,
    table: tableBuffers as ShardTableBuffers,
    doorbells,
    interest: interestBuffer,
    clusterState: clusterStateBuffer,
    inbound: rings.map((row) => row[index]!),
    outbound: rings[index]!,
    toBroker: toBroker[index]!,
    fromBroker: fromBroker[index]!,
    processorTypes: broker.processorTypes(),
    metrics: snapshotBuffer,
  });

  /** Starts shard `index`; resolves with the port it listens on (`listenPort` null: once it is sent one). */
  const spawn = (slot: ShardSlot, initial: boolean, listenPort: number | null = port): Promise<number> =>
    new Promise((resolve, reject) => {
      const worker = new Worker(SHARD_ENTRY, { workerData: initFor(slot.index, listenPort) });
      slot.worker = worker;
      slot.startedAt = Date.now();
      slot.lastFatal = null;
      let listening = false;
      worker.on('message', (message: ShardToPrimary) => {
        if (message.type === 'listening') {
          listening = true;
          resolve(message.port);
          notifyRestartWaiters();
        } else if (message.type === 'listen-failed') {
          reject(new OcsError('E_STARTUP', `shard ${slot.index} cannot listen on ${message.host}:${message.port}`));
        } else if (message.type === 'fatal') {
          slot.lastFatal = message.message;
        }
      });
      worker.on('error', (err) => {
        slot.lastFatal = err.message;
        if (!listening) reject(new OcsError('E_STARTUP', `shard ${slot.index} failed to start: ${err.message}`, { cause: err }));
      });
      worker.on('exit', (code) => {
        slot.worker = null;
        broker.shardDown(slot.index);
        table.setStatus(slot.index, ShardStatus.DOWN);
        table.forgetConnections(slot.index);
        table.forgetLinks(slot.index);
        interest.clear(slot.index);
        if (stopping) {
          log.info({ shard: slot.index, code }, 'shard exited');
          return;
        }
        if (initial && !listening) {
          reject(new OcsError('E_STARTUP', `shard ${slot.index} exited with code ${code} before listening`));
          return;
        }
        scheduleRestart(slot, code);
      });
    });

  const scheduleRestart = (slot: ShardSlot, code: number): void => {
    slot.crashesInARow = Date.now() - slot.startedAt > STABLE_MS ? 1 : slot.crashesInARow + 1;
    const delay = Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** (slot.crashesInARow - 1));
    log.error({ code: 'E_INTERNAL', shard: slot.index, exitCode: code, reason: slot.lastFatal ?? 'exited without a reason', restartInMs: delay }, 'shard died; restarting it');
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = null;
      if (stopping) return;
      slot.restarts++;
      table.countRestart(slot.index);
      // A failed restart exits too, and its exit schedules the next attempt.
      spawn(slot, false).catch((err: Error) => {
        log.error({ code: 'E_STARTUP', shard: slot.index, err: err.message }, 'shard restart failed');
      });
    }, delay);
  };

  const notifyRestartWaiters = (): void => {
    for (let i = restartWaiters.length - 1; i >= 0; i--) {
      const waiter = restartWaiters[i]!;
      const slot = slots[waiter.index]!;
      if (slot.restarts >= waiter.count && table.isUp(waiter.index)) {
        restartWaiters.splice(i, 1);
        waiter.resolve();
      }
    }
  };

  /**
   * Stops every shard, closing its sockets with `code`, then the broker, then lets go of the
   * store's lease once everything is committed. Runs once. A drain (`spreadMs` not null) first
   * closes the listen sockets and waits for the deliveries in flight to be acknowledged, then
   * spreads the closes over `spreadMs`; the wait holds with a drain_window of 0 too, or every
   * delivery in flight would come back after the restart.
   */
  const shutdown = (code: number, reason: string, spreadMs: number | null): Promise<void> => (stopping ??= stopAll(code, reason, spreadMs));
  const stopAll = async (code: number, reason: string, drainSpreadMs: number | null): Promise<void> => {
    sampler.stop();
    monitor.stop();
    guard.stop();
    const deadline = Date.now() + config.websocket.server.shutdown_timeout * 1000 * 0.8;
    const spreadMs = drainSpreadMs ?? 0;
    if (drainSpreadMs !== null) {
      for (const slot of slots) slot.worker?.postMessage({ type: 'stop-accepting' } satisfies PrimaryToShard);
      broker.pauseDelivery();
      await until(() => broker.depth().inflight === 0, ACK_BARRIER_MS);
    }
    const graceMs = Math.max(100, deadline - Date.now() - spreadMs);
    const exits = slots.map((slot) => {
      if (slot.restartTimer) clearTimeout(slot.restartTimer);
      const worker = slot.worker;
      if (!worker) return Promise.resolve();
      return new Promise<void>((resolve) => {
        worker.once('exit', () => resolve());
        worker.postMessage({ type: 'shutdown', graceMs, code, reason, spreadMs } satisfies PrimaryToShard);
      });
    });
    await Promise.all(exits);
    // The broker, then the store's lease (LMDB; a cluster node has none to let go).
    await messaging.stop();
    await codec.close();
    reportStopped(stoppedItself ? 1 : 0);
  };
  const drainMs = config.websocket.server.drain_window * 1000;

  const link = new RingShardLink({
    shards,
    doorbells,
    fromShard: toBroker,
    toShard: fromBroker,
    // Starting or up: a shard that is down or stopping has no connections left to deliver to.
    accepts: (shard) => table.status(shard) === ShardStatus.UP || table.status(shard) === ShardStatus.STARTING,
    maxBacklogBytes: config.websocket.performance.ring_overflow_bytes,
    log,
    interest,
    ...(hub ? { metrics: { report: (shard: number, fields: unknown[]) => hub.acceptRecord(shard, fields), wanted: () => hub.renderWanted() } } : {}),
  });
  // One process reports the cluster's counters as 0.
  const messagingStats = () => ({ ...NO_CLUSTER_COUNTERS, ...broker.stats, ...link.stats });
  const sampler = new StatsSampler(table, monitoring, log, messagingStats, hub);
  // The primary's own pool: large dead-letter pages are rendered there, off the broker's loop.
  const codec = new Codec(codecSettings(config.websocket.performance));
  const messaging = await startMessaging({
    config: config as MessagingParts['config'],
    instance,
    log,
    link,
    store,
    clusterState,
    ...(hub ? { latency: hub.primary } : {}),
    publishProcessorTypes: (types) => {
      for (const slot of slots) slot.worker?.postMessage({ type: 'processors', types } satisfies PrimaryToShard);
    },
    // Into the shared table, so that every shard's /health shows it.
    storeHealthChanged: (health) => table.setStoreHealth(health),
    renderDeadLetters: (letters) => codec.renderDeadLetters(letters),
    // What each shard's writer published there (src/shard/overflow-gauges.ts).
    behind: (shard, since = Infinity) => table.isUp(shard) && table.linkBackedUpSince(shard, Link.TO_BROKER, since),
    shards,
    leaseLost: () => {
      stoppedItself = true;
      void shutdown(CloseCodes.SERVICE_RESTART, 'server restarting', drainMs);
    },
  });
  const broker = messaging.broker;
  const monitor = new LinkMonitor({ table, toBroker, fromBroker, rings, brokerOverflow: (shard) => link.overflowOf(shard) });
  monitor.start();
  const tellShards = (on: boolean): void => {
    table.setAccepting(on); // for /health, and for a shard that starts meanwhile
    for (const slot of slots) slot.worker?.postMessage({ type: 'accepting', on } satisfies PrimaryToShard);
  };
  const guard = new OpenFileGuard({ limit: readOpenFileLimit()?.soft ?? Infinity, pause: () => tellShards(false), resume: () => tellShards(true), log });

  try {
    // All shards load at once. Port 0: the first one picks a port (src/util/free-port.ts) and
    // the others, waiting for it, are then given it.
    const pickPort = port === 0;
    const others = slots.slice(1).map((slot) => spawn(slot, true, pickPort ? null : port));
    const first = spawn(slots[0]!, true).then((picked) => {
      port = picked;
      if (pickPort) for (const slot of slots.slice(1)) slot.worker?.postMessage({ type: 'listen', port: picked } satisfies PrimaryToShard);
    });
    await Promise.all([first, ...others]);
  } catch (err) {
    await shutdown(CloseCodes.GOING_AWAY, 'server failed to start', null);
    throw err;
  }
  sampler.start();
  guard.start();

  return {
    port,
    shards,
    table,
    get ownsStore() {
      return messaging.ownsStore;
    },
    close: () => shutdown(CloseCodes.GOING_AWAY, 'server shutting down', null),
    drain: () => shutdown(CloseCodes.SERVICE_RESTART, 'server restarting', drainMs),
    stopped,
    injectShardCrash(index: number) {
      slots[index]?.worker?.postMessage({ type: 'crash', reason: `injected crash of shard ${index}` } satisfies PrimaryToShard);
    },
    injectShardStall(index: number, ms: number) {
      slots[index]?.worker?.postMessage({ type: 'stall', ms } satisfies PrimaryToShard);
    },
    publish: (group, data, options) => broker.publish(group, data, options),
    send: (user, data, options) => broker.send(user, data, options),
    registerProcessor: (type, processor) => broker.registerProcessor(type, processor),
    setGroupLoadBalanceStrategy: (group, strategy) => broker.setGroupStrategy(group, strategy),
    messagingStats: () => broker.stats,
    cluster: clustered ? clusterApi(broker as ClusterNode) : null,
    whenRestarted(index: number, count: number) {
      return new Promise<void>((resolve) => {
        restartWaiters.push({ index, count, resolve });
        notifyRestartWaiters();
      });
    },
  };
}

/** Resolves once `done()` holds, or after `timeoutMs`. */
async function until(done: () => boolean, timeoutMs: number): Promise<void> {
  const giveUpAt = Date.now() + timeoutMs;
  while (!done() && Date.now() < giveUpAt) await new Promise((resolve) => setTimeout(resolve, ACK_BARRIER_POLL_MS));
}

/** RunningServer.cluster of a cluster node (cluster mode only: the class itself is loaded only then). */
function clusterApi(node: ClusterNode): NonNullable<RunningServer['cluster']> {
  return { node: node.node, groupPresence: (group) => node.presence.group(group), userPresence: (user) => node.presence.user(user) };
}

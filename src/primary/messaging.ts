/**
 * What delivers messages in this process, and how it lets go at the end of a drain: the broker
 * on the LMDB store, which holds the store's lease (src/broker/ownership.ts: a pm2 reload's two
 * processes hand the store over); or, in cluster mode (cluster.redis_url), a node of the Redis
 * cluster (src/cluster), which opens no LMDB store and takes no lease: every node delivers, and
 * Redis' scripts decide which node delivers what, so a reload's new process serves at once.
 */
import { Broker, type BrokerOptions } from '../broker/broker.js';
import type { HistoryStats } from '../broker/history.js';
import { LEASE_TTL_MS, Ownership } from '../broker/ownership.js';
import type { RingShardLink } from '../broker/ring-link.js';
import type { ClusterNode, ClusterNodeOptions } from '../cluster/node.js';
import type { Config } from '../config/schema.js';
import type { ClusterState } from '../shared/cluster-state.js';
import type { MessageStore } from '../store/store.js';
import type { Logger } from '../util/logger.js';

export interface MessagingParts {
  config: Config;
  instance: string;
  log: Logger;
  link: RingShardLink;
  /** The LMDB store; null in cluster mode. */
  store: MessageStore | null;
  clusterState: ClusterState;
  publishProcessorTypes(types: string[]): void;
  storeHealthChanged: NonNullable<BrokerOptions['storeHealthChanged']>;
  latency?: BrokerOptions['latency'];
  renderDeadLetters?: BrokerOptions['renderDeadLetters'];
  /** Whether a shard held records for the broker that its ring had no room for, now or since a time (acks among them, perhaps). */
  behind?: BrokerOptions['behind'];
  shards: number;
  /** Another process took the store's lease while this one held it: this one must stop. */
  leaseLost(): void;
}

export interface Messaging {
  readonly broker: Broker | ClusterNode;
  /** Whether this process delivers what is stored: the lease holder on LMDB; a cluster node always. */
  readonly ownsStore: boolean;
  /** Group history's figures, for /stats and /metrics; null in cluster mode (history is in Redis) or when no group keeps history. */
  historyStats(): HistoryStats | null;
  /** After the shards exited: stops the broker, then lets the next process take the store and closes it. */
  stop(): Promise<void>;
}

/** Starts the broker, or the cluster node (waiting at most cluster.command_timeout for Redis). */
export async function startMessaging(parts: MessagingParts): Promise<Messaging> {
  const { config, instance, log, link, store, publishProcessorTypes, storeHealthChanged } = parts;
  if (store === null) {
    // Loaded only in cluster mode: ioredis and the cluster's modules cost every other server ~0.15 s of CPU at start-up.
    const { ClusterNode } = await import('../cluster/node.js');
    const node = new ClusterNode({
      config: config as ClusterNodeOptions['config'],
      instance,
      log,
      link,
      state: parts.clusterState,
      publishProcessorTypes,
      storeHealthChanged,
      ...(parts.latency ? { latency: parts.latency } : {}),
      ...(parts.behind ? { behind: anyShard(parts.shards, parts.behind, config.websocket.delivery.ack_timeout * 1000) } : {}),
    });
    await node.start();
    log.info({ node: node.node, redis: parts.clusterState.view()?.redis, prefix: config.cluster.key_prefix }, 'cluster: this process is a node');
    return { broker: node, ownsStore: true, historyStats: () => null, stop: () => node.stop() };
  }
  const broker = new Broker({
    config,
    store,
    instance,
    log,
    link,
    publishProcessorTypes,
    storeHealthChanged,
    ...(parts.latency ? { latency: parts.latency } : {}),
    ...(parts.renderDeadLetters ? { renderDeadLetters: parts.renderDeadLetters } : {}),
    ...(parts.behind ? { behind: parts.behind } : {}),
  });
  const ownership = new Ownership(store.lease(instance, LEASE_TTL_MS), log, {
    acquired: (previous, why) => {
      const loaded = broker.takeOver();
      if (loaded !== null) log.info({ previousPid: previous?.pid, why, loaded }, 'store lease taken over: this process delivers the stored messages now');
      else if (previous && why !== 'released') log.info({ previousPid: previous.pid, why }, 'the previous process did not release the store (it did not stop cleanly): what it had in flight is delivered again');
    },
    lost: () => parts.leaseLost(),
    adopt: async (gone, alone) => {
      const loaded = await broker.adopt(alone);
      if (loaded !== null) log.info({ standbyPids: gone.map((g) => g.pid), loaded }, 'processes that stood by on the store are gone: this process delivers what they stored');
      return loaded !== null;
    },
  });
  broker.start({ loadStored: await ownership.start() });
  return {
    broker,
    get ownsStore() {
      return ownership.owns;
    },
    historyStats: () => broker.historyStats(),
    async stop() {
      ownership.stop();
      await broker.stop();
      // Only now: whatever this process wrote (acks, sends taken during the drain) is committed.
      await ownership.release().catch((err: unknown) => log.error({ code: 'E_INTERNAL', err }, 'store lease: release failed; the next process takes the store once this one has exited'));
      await store.close();
    },
  };
}

/**
 * Whether `behind` holds for any of `shards` shards within the last `windowMs` (a cluster node
 * marks itself behind as a whole, at its sweeps): a delivery's ack refused for a backlog that
 * drained before the sweep still has its deadline put off, as on one process.
 */
function anyShard(shards: number, behind: NonNullable<BrokerOptions['behind']>, windowMs: number): () => boolean {
  return () => {
    const since = Date.now() - windowMs;
    for (let shard = 0; shard < shards; shard++) if (behind(shard, since)) return true;
    return false;
  };
}

/**
 * What a node counts in cluster mode: the broker's counters (same names as
 * src/broker/broker.ts, so /stats and /metrics read them alike; `stored` and `stored_bytes`
 * are the whole cluster's, as the last sweep read them from Redis) and the cluster's own.
 */
import { newBrokerStats, type BrokerStats } from '../broker/broker.js';
import type { Config } from '../config/schema.js';
import { dropWarning } from '../store/dead-letter-bound.js';
import type { Logger } from '../util/logger.js';

export interface ClusterStats extends BrokerStats {
  /** Pubs of this node's clients published to Redis for the other nodes. */
  cluster_pubs_out: number;
  /** Pubs from other nodes delivered here. */
  cluster_pubs_in: number;
  /** Pubs that could not be published to Redis (it went away as they left): the other nodes missed them. */
  cluster_pubs_lost: number;
  /** Sends, anys and acks refused with E_CLUSTER_UNAVAILABLE. */
  cluster_unavailable: number;
  /** Payloads on this node's channels that did not parse: dropped. */
  cluster_malformed: number;
  /** History messages this node's members missed while it was cut off from Redis, forwarded when it was back (history.ts, resume). */
  cluster_history_resumed: number;
  /** History groups whose members could not be given what they missed (no longer kept, too many bytes, a new epoch). */
  cluster_history_gaps: number;
}

/** The cluster's own counters at 0: what one process (the LMDB broker) reports for them. */
export const NO_CLUSTER_COUNTERS = Object.freeze({ cluster_pubs_out: 0, cluster_pubs_in: 0, cluster_pubs_lost: 0, cluster_unavailable: 0, cluster_malformed: 0, cluster_history_resumed: 0, cluster_history_gaps: 0 });

export function newClusterStats(): ClusterStats {
  return { ...newBrokerStats(), ...NO_CLUSTER_COUNTERS };
}

/** What a node does when a script dropped dead letters to keep their bound: counts them, and warns (throttled). */
export function countDrops(stats: ClusterStats, log: Logger, store: Config['store']): (letters: number) => void {
  const warn = dropWarning(log, store);
  return (letters) => {
    stats.dead_dropped += letters;
    warn(letters);
  };
}

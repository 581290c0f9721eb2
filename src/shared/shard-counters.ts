/**
 * What the shard table's counters are (shard-table.ts holds their values): their names in slot
 * order, which is the counters' layout, the broker's counters the primary samples into the
 * table, and which counter each error code adds to. Kept apart from the table's shared memory
 * because most modules need only these names: a shard counts by Counter on its hot path,
 * /metrics and /stats print by name.
 */
import type { ErrorCode } from '../protocol/errors.js';

/** Counter names, in slot order. Append only: the order is the layout. */
export const COUNTERS = [
  'connections_opened',
  'connections_closed',
  'connections_rejected', // 503 over max_connections
  'frames_in',
  'bytes_in',
  'deliveries', // msg frames handed to the transport, local publishes counted per subscriber
  'pubs',
  'ring_forwarded', // records pushed to other shards
  'ring_received',
  'ring_full', // a record that found its ring full and waited in the overflow queue
  'ring_overloaded', // pubs refused with E_OVERLOADED because a ring and its overflow were full
  'slow_consumers_closed',
  'errors_bad_frame',
  'errors_too_large',
  'errors_unauthorized',
  'errors_forbidden',
  'errors_rate_limited',
  'errors_not_member',
  'errors_internal',
  'errors_overloaded',
  'ip_refused_rate', // upgrades refused 429: over connection_attempts_per_ip (+ burst)
  'ip_refused_unauthenticated', // upgrades refused 429: over unauthenticated_per_ip
  'ip_refused_table_full', // upgrades refused 503: max_tracked_ips addresses, none idle
  'ring_refused', // records a ring writer refused: never fit the ring, or over its overflow bound
  'bytes_out', // bytes of msg/batch frames handed to uWS, counted per recipient
  'errors_unknown_id',
  'errors_queue_full',
  'errors_config',
  'errors_startup',
  'refused_unauthorized', // upgrades refused: bad or missing token, anonymous id refused
  'refused_protocol', // upgrades refused: no supported subprotocol offered
  'refused_stopping', // upgrades refused while the shard shuts down
  'errors_store_unavailable',
  'binary_opened', // connections opened with ocs.v1.msgpack
  'binary_closed',
  'codec_offloaded', // tasks handed to the codec pool (large frames decoded, backlogs turned binary)
  'codec_inline_full', // tasks large enough for the pool that ran inline because it was full
  'errors_cluster_unavailable', // cluster mode, Redis unreachable: sends refused, pubs served on this node only
  'cluster_pubs', // pubs handed to the broker for the other nodes (cluster mode)
  'ip_refused_connections', // upgrades refused 429: over max_connections_per_ip
  'http_refused_rate', // HTTP requests other than upgrades refused 429: over http_requests_per_ip (+ burst)
  'http_refused_table_full', // such requests refused 503: max_tracked_ips addresses, none idle
] as const;
export type CounterName = (typeof COUNTERS)[number];

/**
 * The broker's counters, as sampled into the table (names of BrokerStats and of the ring link's
 * LinkStats). Append only.
 */
export const MESSAGING_COUNTERS = [
  'accepted',
  'delivered',
  'redelivered',
  'acked',
  'dead_lettered',
  'dropped_low',
  'queue_full',
  'stored',
  'link_too_large',
  'link_deferred',
  'link_dropped',
  'link_discarded',
  'stored_bytes',
  'expired',
  'store_unavailable',
  'cluster_pubs_out',
  'cluster_pubs_in',
  'cluster_pubs_lost',
  'cluster_unavailable',
  'cluster_malformed',
  'cluster_history_resumed',
  'cluster_history_gaps',
  'dead_dropped',
] as const;
export type MessagingCounterName = (typeof MESSAGING_COUNTERS)[number];
export const COUNTER_COUNT = COUNTERS.length;
export const Counter = Object.fromEntries(COUNTERS.map((name, i) => [name, i])) as Record<CounterName, number>;

/** Which shard counter each error code adds to: one counter per code (/metrics labels them by code). */
export const errorCounter: Readonly<Record<ErrorCode, number>> = {
  E_BAD_FRAME: Counter.errors_bad_frame,
  E_TOO_LARGE: Counter.errors_too_large,
  E_UNAUTHORIZED: Counter.errors_unauthorized,
  E_FORBIDDEN: Counter.errors_forbidden,
  E_RATE_LIMITED: Counter.errors_rate_limited,
  E_NOT_MEMBER: Counter.errors_not_member,
  E_OVERLOADED: Counter.errors_overloaded,
  E_UNKNOWN_ID: Counter.errors_unknown_id,
  E_QUEUE_FULL: Counter.errors_queue_full,
  E_STORE_UNAVAILABLE: Counter.errors_store_unavailable,
  E_CLUSTER_UNAVAILABLE: Counter.errors_cluster_unavailable,
  E_INTERNAL: Counter.errors_internal,
  E_CONFIG: Counter.errors_config,
  E_STARTUP: Counter.errors_startup,
};

/** Slot-ordered counter values as a {name: value} object. */
export function byName(cells: ArrayLike<number>): Record<CounterName, number> {
  const named = {} as Record<CounterName, number>;
  COUNTERS.forEach((name, i) => (named[name] = cells[i]!));
  return named;
}

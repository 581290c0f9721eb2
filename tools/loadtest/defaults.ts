/**
 * The load tester's defaults, in one place. A running server given by --host alone is reached
 * on the server's own default port and endpoint (src/config/schema.ts), not on numbers of ours.
 */
import { availableParallelism } from 'node:os';
import { DEFAULT_PATH, DEFAULT_PORT } from '../../src/config/schema.js';

export const LOADTEST_DEFAULTS = {
  /** Port of a server given with --host and no --port. */
  port: DEFAULT_PORT,
  /** WebSocket endpoint path (--path). */
  path: DEFAULT_PATH,
  /** Shards of the server the load tester starts itself (--shards). */
  shards: 2,
  /** max_connections of that server. */
  maxConnections: 20_000,
  /** How long that server may take to log "ready". */
  readyTimeoutMs: 20_000,
  /** A connection not welcomed and joined after this long has failed. */
  connectTimeoutMs: 10_000,
  /** Pubs acknowledged this close to a receiver's leave are not owed to it (see delivery.ts). */
  fenceMs: 250,
} as const;

/**
 * Groups of the reconnect scenario start with this, so that they keep history: the server the
 * load tester starts keeps it for them (HISTORY_RULE); a server given with --host needs the
 * same websocket.history pattern.
 */
export const HISTORY_GROUP_PREFIX = 'lt-history.';
export const HISTORY_RULE = { pattern: `${HISTORY_GROUP_PREFIX}*`, size: 100_000, ttl: 3600 } as const;

/** Loadgen threads (--threads): half the cores, at least 2 and at most 4. */
export function defaultThreads(): number {
  return Math.min(4, Math.max(2, Math.floor(availableParallelism() / 2)));
}

/**
 * What the primary and a shard say to each other over postMessage: control only, never
 * message traffic (that rides the rings).
 */
import type { Config } from '../config/schema.js';
import type { ShardTableBuffers } from './shard-table.js';

export interface ShardInit {
  shard: number;
  shards: number;
  /**
   * The port to listen on: the configured one; 0 (port 0, shard 0's first start): a free one it
   * picks itself; null (port 0, the other shards' first start): the one a `listen` message
   * gives once shard 0 has picked it. They load meanwhile, so all shards start at once.
   */
  port: number | null;
  config: Config;
  instance: string;
  /** How many times this shard's slot was started before (0 first): part of its ids' prefix, so a restarted shard never repeats an id. */
  generation: number;
  version: string;
  table: ShardTableBuffers;
  doorbells: SharedArrayBuffer;
  /** Cluster mode's state: off, or whether Redis is reachable (src/shared/cluster-state.ts). */
  clusterState: SharedArrayBuffer;
  /** Which shards have members of which groups (src/shared/interest-table.ts). */
  interest: SharedArrayBuffer;
  /** inbound[i]: ring from shard i to this one (null for itself). */
  inbound: (SharedArrayBuffer | null)[];
  /** outbound[i]: ring from this shard to shard i (null for itself). */
  outbound: (SharedArrayBuffer | null)[];
  /** Rings to and from the broker (primary thread); its doorbell slot is index `shards`. */
  toBroker: SharedArrayBuffer;
  fromBroker: SharedArrayBuffer;
  /** `data.type` values with a registered processor: such pubs detour through the broker. */
  processorTypes: string[];
  /** Where the primary renders /metrics, /stats and /alerts for the shards to serve (src/metrics/snapshot.ts). */
  metrics: SharedArrayBuffer;
}

export type PrimaryToShard =
  /** Close every socket with `code`, spread evenly over `spreadMs` (0: at once), and exit; cut the stubborn ones after `graceMs`. */
  | { type: 'shutdown'; graceMs: number; code: number; reason: string; spreadMs: number }
  /** A drain's first step: close the listen socket, keep serving the open connections. */
  | { type: 'stop-accepting' }
  /** Fault injection for tests and chaos drills: the shard throws from a timer, as a bug would. */
  | { type: 'crash'; reason: string }
  /** Fault injection: the shard's thread is busy for `ms` (its rings fill up meanwhile). */
  | { type: 'stall'; ms: number }
  /** The set of `data.type` values with a processor changed. */
  | { type: 'processors'; types: string[] }
  /** The port shard 0 picked, for a shard started with `port: null`. */
  | { type: 'listen'; port: number }
  /** The open-file guard: close the listen socket (the process is near its open-file limit), or open it again. */
  | { type: 'accepting'; on: boolean };

export type ShardToPrimary =
  | { type: 'listening'; port: number }
  | { type: 'listen-failed'; host: string; port: number }
  | { type: 'fatal'; message: string; stack: string | undefined }
  | { type: 'stopped' };

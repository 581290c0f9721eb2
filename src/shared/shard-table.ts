/**
 * State every thread can read without asking: shard status, the connection count behind
 * `max_connections`, and per-shard counters for /health and /stats.
 *
 * Layout:
 *   control: Int32Array  [TOTAL_CONNECTIONS, PEAK_CONNECTIONS, then per shard: STATUS,
 *            CONNECTIONS, RESTARTS, PEAK] (peaks: the most connections held at once)
 *   counters: Float64Array, per shard COUNTER_COUNT slots, written only by that shard.
 *   rates: Float64Array, COUNTER_COUNT slots, per-second rates over all shards, written only by
 *          the primary each metrics_collection_interval.
 *   messaging: Float64Array, MESSAGING_COUNTERS slots: the broker's counters (it runs in the
 *          primary thread), copied there by the same sampler.
 * Counters are plain 8-byte stores by their one writer: readers may see a value one update
 * old, never a torn one (aligned 64-bit stores on every platform Node.js runs on).
 */
import type { ErrorCode } from '../protocol/errors.js';

export const TOTAL_CONNECTIONS = 0;
const PEAK_CONNECTIONS = 1;
const CONTROL_HEADER = 2;
const CONTROL_STRIDE = 4;
const STATUS = 0;
const CONNECTIONS = 1;
const RESTARTS = 2;
const PEAK = 3;

export const ShardStatus = { DOWN: 0, STARTING: 1, UP: 2, STOPPING: 3 } as const;
export type ShardStatusValue = (typeof ShardStatus)[keyof typeof ShardStatus];
const STATUS_NAMES = ['down', 'starting', 'up', 'stopping'] as const;

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
  'bytes_out', // bytes of msg/batch frames handed to uWS, counted per recipient
  'errors_unknown_id',
  'errors_queue_full',
  'errors_config',
  'errors_startup',
  'refused_unauthorized', // upgrades refused: bad or missing token, anonymous id refused
  'refused_protocol', // upgrades refused: no supported subprotocol offered
  'refused_stopping', // upgrades refused while the shard shuts down
] as const;
export type CounterName = (typeof COUNTERS)[number];

/** The broker's counters, as sampled into the table (names of BrokerStats). */
export const MESSAGING_COUNTERS = ['accepted', 'delivered', 'redelivered', 'acked', 'dead_lettered', 'dropped_low', 'queue_full', 'stored'] as const;
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
  E_INTERNAL: Counter.errors_internal,
  E_CONFIG: Counter.errors_config,
  E_STARTUP: Counter.errors_startup,
};

export interface ShardTableBuffers {
  control: SharedArrayBuffer;
  counters: SharedArrayBuffer;
  rates: SharedArrayBuffer;
  messaging: SharedArrayBuffer;
}

export function createShardTable(shards: number): ShardTableBuffers {
  return {
    control: new SharedArrayBuffer((CONTROL_HEADER + shards * CONTROL_STRIDE) * 4),
    counters: new SharedArrayBuffer(shards * COUNTER_COUNT * 8),
    rates: new SharedArrayBuffer(COUNTER_COUNT * 8),
    messaging: new SharedArrayBuffer(MESSAGING_COUNTERS.length * 8),
  };
}

export interface ShardSnapshot {
  shard: number;
  status: (typeof STATUS_NAMES)[number];
  connections: number;
  peak_connections: number;
  restarts: number;
  counters: Record<CounterName, number>;
}

export class ShardTable {
  readonly shards: number;
  private readonly control: Int32Array;
  private readonly counterCells: Float64Array;
  /** Per-second rates over all shards, by counter slot (primary writes, anyone reads). */
  readonly rates: Float64Array;
  /** The broker's counters, by MESSAGING_COUNTERS slot (primary writes, anyone reads). */
  readonly messaging: Float64Array;

  constructor(buffers: ShardTableBuffers) {
    this.control = new Int32Array(buffers.control);
    this.counterCells = new Float64Array(buffers.counters);
    this.rates = new Float64Array(buffers.rates);
    this.messaging = new Float64Array(buffers.messaging);
    this.shards = (this.control.length - CONTROL_HEADER) / CONTROL_STRIDE;
  }

  private slot(shard: number, field: number): number {
    return CONTROL_HEADER + shard * CONTROL_STRIDE + field;
  }

  status(shard: number): ShardStatusValue {
    return Atomics.load(this.control, this.slot(shard, STATUS)) as ShardStatusValue;
  }

  setStatus(shard: number, status: ShardStatusValue): void {
    Atomics.store(this.control, this.slot(shard, STATUS), status);
  }

  isUp(shard: number): boolean {
    return Atomics.load(this.control, this.slot(shard, STATUS)) === ShardStatus.UP;
  }

  /** Claims a connection slot against `max`; false (nothing claimed) when full. */
  tryOpenConnection(shard: number, max: number): boolean {
    const total = Atomics.add(this.control, TOTAL_CONNECTIONS, 1) + 1;
    if (total > max) {
      Atomics.sub(this.control, TOTAL_CONNECTIONS, 1);
      return false;
    }
    raise(this.control, PEAK_CONNECTIONS, total);
    raise(this.control, this.slot(shard, PEAK), Atomics.add(this.control, this.slot(shard, CONNECTIONS), 1) + 1);
    return true;
  }

  closeConnection(shard: number): void {
    Atomics.sub(this.control, TOTAL_CONNECTIONS, 1);
    Atomics.sub(this.control, this.slot(shard, CONNECTIONS), 1);
  }

  /** After a shard died: its connections are gone, give their slots back. */
  forgetConnections(shard: number): void {
    const held = Atomics.exchange(this.control, this.slot(shard, CONNECTIONS), 0);
    Atomics.sub(this.control, TOTAL_CONNECTIONS, held);
  }

  totalConnections(): number {
    return Atomics.load(this.control, TOTAL_CONNECTIONS);
  }

  connections(shard: number): number {
    return Atomics.load(this.control, this.slot(shard, CONNECTIONS));
  }

  /** The most connections held at once, over all shards or by `shard`, since the server started. */
  peakConnections(shard?: number): number {
    return Atomics.load(this.control, shard === undefined ? PEAK_CONNECTIONS : this.slot(shard, PEAK));
  }

  restarts(shard: number): number {
    return Atomics.load(this.control, this.slot(shard, RESTARTS));
  }

  countRestart(shard: number): void {
    Atomics.add(this.control, this.slot(shard, RESTARTS), 1);
  }

  /** The writing shard's counters, for increments on its hot path. */
  countersOf(shard: number): Float64Array {
    return this.counterCells.subarray(shard * COUNTER_COUNT, (shard + 1) * COUNTER_COUNT);
  }

  /** Every counter summed over all shards, by slot. */
  totals(): Float64Array {
    const sums = new Float64Array(COUNTER_COUNT);
    for (let shard = 0; shard < this.shards; shard++) {
      const cells = this.countersOf(shard);
      for (let i = 0; i < COUNTER_COUNT; i++) sums[i]! += cells[i]!;
    }
    return sums;
  }

  snapshot(shard: number): ShardSnapshot {
    const counters = byName(this.countersOf(shard));
    return {
      shard,
      status: STATUS_NAMES[this.status(shard)]!,
      connections: this.connections(shard),
      peak_connections: this.peakConnections(shard),
      restarts: this.restarts(shard),
      counters,
    };
  }
}

/** Raises the cell at `at` to `value` unless it holds more already (shards race for the total's). */
function raise(cells: Int32Array, at: number, value: number): void {
  let seen = Atomics.load(cells, at);
  while (value > seen) {
    const previous = Atomics.compareExchange(cells, at, seen, value);
    if (previous === seen) return;
    seen = previous;
  }
}

/** Slot-ordered counter values as a {name: value} object. */
export function byName(cells: ArrayLike<number>): Record<CounterName, number> {
  const named = {} as Record<CounterName, number>;
  COUNTERS.forEach((name, i) => (named[name] = cells[i]!));
  return named;
}

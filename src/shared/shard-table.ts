/**
 * State every thread can read without asking: shard status, the connection count behind
 * `max_connections`, and per-shard counters for /health and /stats.
 *
 * Layout:
 *   control: Int32Array  [TOTAL_CONNECTIONS, PEAK_CONNECTIONS, ACCEPT_PAUSED, then per shard:
 *            STATUS, CONNECTIONS, RESTARTS, PEAK] (peaks: the most connections held at once;
 *            ACCEPT_PAUSED: 1 while the primary's open-file guard keeps the listen sockets closed)
 *   counters: Float64Array, per shard COUNTER_COUNT slots (shard-counters.ts names them),
 *          written only by that shard.
 *   rates: Float64Array, COUNTER_COUNT slots, per-second rates over all shards, written only by
 *          the primary each metrics_collection_interval.
 *   messaging: Float64Array, MESSAGING_COUNTERS slots: the broker's counters (it runs in the
 *          primary thread), copied there by the same sampler.
 *   store: Int32Array [VERSION, WRITABLE, FAILED_WRITES, ERROR_LENGTH] then STORE_ERROR_BYTES of
 *          UTF-8: the message store's health (the primary owns the store), for /health.
 *   links: Float64Array, per shard and per link (LINKS) LINK_FIELDS slots: what waits in the
 *          rings the shard writes and the broker writes to it. A ring writer's overflow is
 *          known only to its thread, so each writes its own (the shard its rings', the primary
 *          the broker's); unread bytes and since when a ring has not drained are the
 *          primary's (it holds every ring, and sees a shard that is too busy to say so).
 * Counters are plain 8-byte stores by their one writer: readers may see a value one update
 * old, never a torn one (aligned 64-bit stores on every platform Node.js runs on). The store's
 * health is several fields and a text, so it is a seqlock: the writer makes VERSION odd while
 * it writes, and a reader retries a read that saw it odd or changed.
 */
import { COUNTER_COUNT, Counter, MESSAGING_COUNTERS, byName, type CounterName } from './shard-counters.js';

export const TOTAL_CONNECTIONS = 0;
const PEAK_CONNECTIONS = 1;
const ACCEPT_PAUSED = 2;
const CONTROL_HEADER = 3;
const CONTROL_STRIDE = 4;
const STATUS = 0;
const CONNECTIONS = 1;
const RESTARTS = 2;
const PEAK = 3;

const STORE_VERSION = 0;
const STORE_WRITABLE = 1;
const STORE_FAILED_WRITES = 2;
const STORE_ERROR_LENGTH = 3;
const STORE_HEADER_BYTES = 16;
/** Room for the store's last error; a longer one is cut. */
const STORE_ERROR_BYTES = 512;

/** The message store's health as /health shows it. */
export interface StoreHealthView {
  writable: boolean;
  lastError: string | null;
  failedWrites: number;
}

export const ShardStatus = { DOWN: 0, STARTING: 1, UP: 2, STOPPING: 3 } as const;
export type ShardStatusValue = (typeof ShardStatus)[keyof typeof ShardStatus];
const STATUS_NAMES = ['down', 'starting', 'up', 'stopping'] as const;
export type ShardStatusName = (typeof STATUS_NAMES)[number];

/** How /health and /stats name a status. */
export function shardStatusName(status: ShardStatusValue): ShardStatusName {
  return STATUS_NAMES[status];
}


/** A shard's links, as /health names them: the rings it writes to the broker and to the other shards, and the broker's to it. */
export const LINKS = ['to_broker', 'from_broker', 'to_shards'] as const;
export type LinkName = (typeof LINKS)[number];
export const Link = { TO_BROKER: 0, FROM_BROKER: 1, TO_SHARDS: 2 } as const;
/**
 * Per link: overflow bytes, when its oldest waiting record was queued, bytes unread in the ring,
 * since when they have not drained (ms; 0: nothing waits), and when an overflow was last seen
 * (ms; 0: never).
 */
const OVERFLOW_BYTES = 0;
const OVERFLOW_SINCE = 1;
const UNREAD_BYTES = 2;
const STUCK_SINCE = 3;
const OVERFLOW_SEEN_AT = 4;
const LINK_FIELDS = 5;

/** What waits on one link, as /health shows it. */
export interface LinkState {
  /** Bytes in the writer's overflow, waiting for room in the ring. */
  backlog_bytes: number;
  /** Bytes in the ring its consumer has not read. */
  unread_bytes: number;
  /** How long the link has not drained: the oldest waiting record's age, or how long unread bytes have sat unread. */
  waiting_ms: number;
}

export interface ShardTableBuffers {
  control: SharedArrayBuffer;
  counters: SharedArrayBuffer;
  rates: SharedArrayBuffer;
  messaging: SharedArrayBuffer;
  store: SharedArrayBuffer;
  links: SharedArrayBuffer;
}

export function createShardTable(shards: number): ShardTableBuffers {
  return {
    control: new SharedArrayBuffer((CONTROL_HEADER + shards * CONTROL_STRIDE) * 4),
    counters: new SharedArrayBuffer(shards * COUNTER_COUNT * 8),
    rates: new SharedArrayBuffer(COUNTER_COUNT * 8),
    messaging: new SharedArrayBuffer(MESSAGING_COUNTERS.length * 8),
    store: createStoreHealthBuffer(),
    links: new SharedArrayBuffer(shards * LINKS.length * LINK_FIELDS * 8),
  };
}

function createStoreHealthBuffer(): SharedArrayBuffer {
  const buffer = new SharedArrayBuffer(STORE_HEADER_BYTES + STORE_ERROR_BYTES);
  const header = new Int32Array(buffer, 0, STORE_HEADER_BYTES / 4);
  header[STORE_WRITABLE] = 1;
  header[STORE_ERROR_LENGTH] = -1;
  return buffer;
}

export interface ShardSnapshot {
  shard: number;
  status: ShardStatusName;
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
  private readonly storeHeader: Int32Array;
  private readonly storeError: Uint8Array;
  private readonly links: Float64Array;

  constructor(buffers: ShardTableBuffers) {
    this.control = new Int32Array(buffers.control);
    this.counterCells = new Float64Array(buffers.counters);
    this.rates = new Float64Array(buffers.rates);
    this.messaging = new Float64Array(buffers.messaging);
    this.storeHeader = new Int32Array(buffers.store, 0, STORE_HEADER_BYTES / 4);
    this.storeError = new Uint8Array(buffers.store, STORE_HEADER_BYTES, STORE_ERROR_BYTES);
    this.links = new Float64Array(buffers.links);
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

  /** The primary's open-file guard (src/primary/open-file-guard.ts): whether the shards may accept sockets. */
  setAccepting(on: boolean): void {
    Atomics.store(this.control, ACCEPT_PAUSED, on ? 0 : 1);
  }

  accepting(): boolean {
    return Atomics.load(this.control, ACCEPT_PAUSED) === 0;
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

  /**
   * Open ocs.v1.msgpack connections over every shard: whether a broadcast needs its binary
   * frame made for other shards. A hint, not a count to rely on (a crashed shard's linger).
   */
  binaryConnections(): number {
    // Indexed, not through countersOf(): a two-shard server asks on every pub it forwards, and
    // a subarray per shard was two typed arrays made per pub.
    const cells = this.counterCells;
    let open = 0;
    for (let at = 0; at < this.shards * COUNTER_COUNT; at += COUNTER_COUNT) {
      open += cells[at + Counter.binary_opened]! - cells[at + Counter.binary_closed]!;
    }
    return open;
  }

  /** Publishes the store's health (the primary, its one writer). */
  setStoreHealth(health: StoreHealthView): void {
    const header = this.storeHeader;
    const error = new TextEncoder().encode(health.lastError ?? '').subarray(0, STORE_ERROR_BYTES);
    Atomics.add(header, STORE_VERSION, 1); // odd: being written
    header[STORE_WRITABLE] = health.writable ? 1 : 0;
    header[STORE_FAILED_WRITES] = Math.min(health.failedWrites, 0x7fffffff);
    header[STORE_ERROR_LENGTH] = health.lastError === null ? -1 : error.length;
    this.storeError.set(error);
    Atomics.add(header, STORE_VERSION, 1); // even: done
  }

  /** The store's health as last published (writable until the primary says otherwise). */
  storeHealth(): StoreHealthView {
    const header = this.storeHeader;
    for (;;) {
      const version = Atomics.load(header, STORE_VERSION);
      if (version % 2 === 1) continue; // a write is under way: it takes microseconds
      const length = header[STORE_ERROR_LENGTH]!;
      const view: StoreHealthView = {
        writable: header[STORE_WRITABLE] === 1,
        failedWrites: header[STORE_FAILED_WRITES]!,
        // Copied out of shared memory first: TextDecoder does not read SharedArrayBuffer views.
        lastError: length < 0 ? null : new TextDecoder().decode(this.storeError.slice(0, length)),
      };
      if (Atomics.load(header, STORE_VERSION) === version) return view;
    }
  }

  private linkSlot(shard: number, link: number): number {
    return (shard * LINKS.length + link) * LINK_FIELDS;
  }

  /** By the writer of `link`'s rings: bytes in their overflow, and when the oldest of them was queued (0: none). */
  setLinkOverflow(shard: number, link: number, bytes: number, since: number): void {
    const at = this.linkSlot(shard, link);
    // The publication that shows the overflow drained is the last time it was seen (at most an interval late).
    if (bytes > 0 || this.links[at + OVERFLOW_BYTES]! > 0) this.links[at + OVERFLOW_SEEN_AT] = Date.now();
    this.links[at + OVERFLOW_BYTES] = bytes;
    this.links[at + OVERFLOW_SINCE] = since;
  }

  /** Whether `link`'s writer had records in its overflow at any time since `since` (ms), now included. */
  linkBackedUpSince(shard: number, link: number, since: number): boolean {
    const at = this.linkSlot(shard, link);
    const seenAt = this.links[at + OVERFLOW_SEEN_AT]!;
    return this.links[at + OVERFLOW_BYTES]! > 0 || (seenAt > 0 && seenAt >= since);
  }

  /** By the primary: bytes unread in `link`'s rings, and since when they have not drained (0: they do, or none). */
  setLinkUnread(shard: number, link: number, bytes: number, stuckSince: number): void {
    const at = this.linkSlot(shard, link);
    this.links[at + UNREAD_BYTES] = bytes;
    this.links[at + STUCK_SINCE] = stuckSince;
  }

  /** After a shard died: what its rings' writers reported is void. */
  forgetLinks(shard: number): void {
    for (let link = 0; link < LINKS.length; link++) this.setLinkOverflow(shard, link, 0, 0);
  }

  linkState(shard: number, link: number, now: number): LinkState {
    const at = this.linkSlot(shard, link);
    const since = this.links[at + OVERFLOW_SINCE]!;
    const stuck = this.links[at + STUCK_SINCE]!;
    return {
      backlog_bytes: this.links[at + OVERFLOW_BYTES]!,
      unread_bytes: this.links[at + UNREAD_BYTES]!,
      waiting_ms: Math.max(0, since > 0 ? now - since : 0, stuck > 0 ? now - stuck : 0),
    };
  }

  snapshot(shard: number): ShardSnapshot {
    const counters = byName(this.countersOf(shard));
    return {
      shard,
      status: shardStatusName(this.status(shard)),
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

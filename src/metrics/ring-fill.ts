/**
 * How full the rings are, read by the primary from their headers (src/rings/ring.ts) without
 * touching either end: bytes written and not yet consumed, over the ring's capacity.
 */
import { HEADER_BYTES, READ_INDEX, WRITE_INDEX } from '../rings/ring.js';

export interface RingBuffers {
  /** shardToShard[from][to]; null on the diagonal. */
  shardToShard: (SharedArrayBuffer | null)[][];
  toBroker: SharedArrayBuffer[];
  fromBroker: SharedArrayBuffer[];
}

/** Per shard: the fullest of its rings to other shards, its ring to the broker, and the broker's to it (0..1). */
export interface RingFill {
  shard: number;
  toShards: number;
  toBroker: number;
  fromBroker: number;
}

export class RingGauges {
  private readonly headers: { toShards: Int32Array[]; toBroker: Int32Array; fromBroker: Int32Array }[];

  constructor(rings: RingBuffers) {
    const header = (buffer: SharedArrayBuffer): Int32Array => new Int32Array(buffer, 0, HEADER_BYTES / 4);
    this.headers = rings.toBroker.map((toBroker, shard) => ({
      toShards: rings.shardToShard[shard]!.flatMap((buffer) => (buffer ? [header(buffer)] : [])),
      toBroker: header(toBroker),
      fromBroker: header(rings.fromBroker[shard]!),
    }));
  }

  read(): RingFill[] {
    return this.headers.map((h, shard) => ({
      shard,
      toShards: h.toShards.reduce((max, ring) => Math.max(max, fill(ring)), 0),
      toBroker: fill(h.toBroker),
      fromBroker: fill(h.fromBroker),
    }));
  }
}

function fill(header: Int32Array): number {
  const used = (Atomics.load(header, WRITE_INDEX) - Atomics.load(header, READ_INDEX)) >>> 0;
  return used / (header.buffer.byteLength - HEADER_BYTES);
}

/**
 * Groups inside one shard are uWS topics: a group frame, encoded once, is published to the
 * local subscribers as the same bytes, whether it came from a client of this shard, from
 * another shard's ring or from the broker.
 */
import { Counter } from '../shared/shard-table.js';
import type { TemplatedApp } from '../util/uws.js';

export class LocalGroups {
  /**
   * @param compressFrom frames of at least this many bytes go out compressed, to clients
   *   that negotiated permessage-deflate (Infinity: compression is off)
   */
  constructor(
    private readonly app: TemplatedApp,
    private readonly counters: Float64Array,
    private readonly compressFrom: number,
  ) {}

  /** Returns how many local subscribers it went to. */
  publish(topic: string | Uint8Array, frame: Uint8Array): number {
    const subscribers = this.app.numSubscribers(topic);
    if (subscribers === 0) return 0;
    this.app.publish(topic, frame, false, frame.byteLength >= this.compressFrom);
    this.counters[Counter.deliveries]! += subscribers;
    this.counters[Counter.bytes_out]! += subscribers * frame.byteLength;
    return subscribers;
  }
}

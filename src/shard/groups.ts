/**
 * Groups inside one shard are uWS topics: a group message, encoded once per encoding, is
 * published to the local subscribers as the same bytes, whether it came from a client of this
 * shard, from another shard's ring or from the broker. JSON members are subscribed to the
 * group's name, msgpack members to binaryTopic() of it (broadcast.ts).
 */
import { Counter } from '../shared/shard-counters.js';
import type { TemplatedApp } from '../util/uws.js';
import { binaryTopicOf, type Broadcast } from './broadcast.js';

export class LocalGroups {
  /**
   * @param compressFrom JSON frames of at least this many bytes go out compressed, to clients
   *   that negotiated permessage-deflate (Infinity: compression is off). Binary frames carry
   *   their own LZ4 and never are.
   */
  constructor(
    private readonly app: TemplatedApp,
    private readonly counters: Float64Array,
    private readonly compressFrom: number,
  ) {}

  /** Returns how many local subscribers it went to. */
  publish(topic: string | Uint8Array, message: Broadcast): number {
    const { app, counters } = this;
    let sent = 0;
    const subscribers = app.numSubscribers(topic);
    if (subscribers > 0) {
      const frame = message.json();
      app.publish(topic, frame, false, frame.byteLength >= this.compressFrom);
      counters[Counter.bytes_out]! += subscribers * frame.byteLength;
      sent = subscribers;
    }
    // No msgpack connection on this shard: no second topic to look up.
    if (counters[Counter.binary_opened]! > counters[Counter.binary_closed]!) {
      const binary = binaryTopicOf(topic);
      const members = app.numSubscribers(binary);
      if (members > 0) {
        const frame = message.binary(members);
        app.publish(binary, frame, true, false);
        counters[Counter.bytes_out]! += members * frame.byteLength;
        sent += members;
      }
    }
    counters[Counter.deliveries]! += sent;
    return sent;
  }
}

/**
 * Groups inside one shard are uWS topics: a group message, encoded once per encoding, is
 * published to the local subscribers as the same bytes, whether it came from a client of this
 * shard, from another shard's ring or from the broker. JSON members are subscribed to the
 * group's name, msgpack members to binaryTopic() of it (broadcast.ts).
 */
import { Counter } from '../shared/shard-counters.js';
import type { TemplatedApp } from '../util/uws.js';
import { binaryTopicOf, type Broadcast } from './broadcast.js';
import type { Socket } from './connection.js';

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

  /**
   * Returns how many local subscribers it went to. `except`: a subscriber left out (uWS's
   * publish from a socket skips that socket), to which the caller sends its copy itself.
   */
  publish(topic: string | Uint8Array, message: Broadcast, except: Socket | null = null): number {
    const { app, counters } = this;
    const from = except ?? app;
    let sent = 0;
    const subscribers = app.numSubscribers(topic) - (except?.isSubscribed(topic) === true ? 1 : 0);
    if (subscribers > 0) {
      const frame = message.json();
      from.publish(topic, frame, false, frame.byteLength >= this.compressFrom);
      counters[Counter.bytes_out]! += subscribers * frame.byteLength;
      sent = subscribers;
    }
    // No msgpack connection on this shard: no second topic to look up.
    if (counters[Counter.binary_opened]! > counters[Counter.binary_closed]!) {
      const binary = binaryTopicOf(topic);
      const members = app.numSubscribers(binary) - (except?.isSubscribed(binary) === true ? 1 : 0);
      if (members > 0) {
        const frame = message.binary(members);
        from.publish(binary, frame, true, false);
        counters[Counter.bytes_out]! += members * frame.byteLength;
        sent += members;
      }
    }
    counters[Counter.deliveries]! += sent;
    return sent;
  }
}

/**
 * The latencies the server measures, in slot order (the order of every histogram array and of
 * the encoded histograms in a METRICS record). Append only: the order is the wire layout.
 */
export const LATENCIES = ['pub', 'send', 'ack', 'ping', 'event_loop', 'commit'] as const;
export type LatencyName = (typeof LATENCIES)[number];

export const Latency = { pub: 0, send: 1, ack: 2, ping: 3, event_loop: 4, commit: 5 } as const satisfies Record<LatencyName, number>;
export type LatencyKind = (typeof Latency)[LatencyName];

/** What each one measures: the HELP of its Prometheus histogram and the README's table. */
export const LATENCY_HELP: Record<LatencyName, string> = {
  pub: 'From a pub frame received to its deliveries handed to uWS, once per pub on each shard with subscribers (the ring hop included)',
  send: 'From a send/any frame received by its shard to its delivery handed to uWS (in parallel with its store commit), for messages routed at once (not backlogs or redeliveries)',
  ack: 'From a stored message handed to a shard for delivery to the recipient acknowledging it',
  ping: "Round trip of the server's WebSocket pings to its clients",
  event_loop: 'Event-loop delay of every thread (primary and shards), beyond the sampling timer',
  commit: 'From a send/any frame received by its shard to its store commit resolved in the broker (the sender ack waits for it)',
};

/** Where something records a latency: the time from an epochMs() moment until now. */
export interface LatencyRecorder {
  since(kind: LatencyKind, fromEpochMs: number, count?: number): void;
}

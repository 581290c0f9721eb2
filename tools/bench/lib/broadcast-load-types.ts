// What a broadcast load run is given (the target server, the settings) and what it returns:
// the fields of each target's result in the benchmark's JSON (tools/bench/README.md).
import type { Histogram } from 'hdr-histogram-js';
import { summarize } from '../../lib/histogram.js';
import type { cpuShares } from '../../lib/proc.js';

export interface LoadTarget {
  host: string;
  port: number;
  /** Request path for a user, e.g. `/ws?user=u1`. */
  pathFor(user: string): string;
  /** The server's process id, for its CPU time (threads and child processes included). */
  serverPid: number;
  /** More processes whose CPU counts as the server's (a cluster's other nodes, its Redis). */
  otherPids?: number[];
  /** The port connection c goes to (a cluster's nodes: spread in turn); default `port`. */
  portFor?(connection: number): number;
  /** Shards the server runs (acceptor threads): with placement `by-shard`, group g lives on shard g % shards. */
  shards: number;
  /** wss://, trusting this certificate. */
  tls?: { ca: Buffer };
}

export interface LoadSettings {
  /** Connections being opened at the same time. */
  connectConcurrency: number;
  /** Longest wait for the window's deliveries after the last publication. */
  drainS: number;
  /** One frame in this many is also parsed with JSON.parse and compared. 0: never. */
  verifyEvery: number;
  /**
   * `spread`: each connection stays on the shard the kernel gave it, so every group has members
   * on every shard. `by-shard`: a connection is reopened until it lands on shard g % shards of
   * its group g, so each group lives on one shard (what routing by interest saves).
   */
  placement: Placement;
  /** CPUs (as in taskset -c) whose busy share to report, by role; null when not pinned. */
  serverCpu: string | null;
  generatorCpu: string | null;
  log(line: string): void;
  /**
   * Called when the warm-up's publishing starts, when the measured window starts, and when it
   * ends (after the drain; awaited: the cluster benchmark reads Redis's and the nodes' counters
   * there).
   */
  onWindow?(edge: 'warmup' | 'start' | 'end'): void | Promise<void>;
}

export type Placement = 'spread' | 'by-shard';

export type CoreShares = ReturnType<typeof cpuShares>;

export interface LoadResult {
  connectMs: number;
  placement: Placement;
  /** Connections closed and opened again to land on their group's shard (placement by-shard). */
  reconnects: number;
  /** Connections per shard, from the `shard` field of welcome frames. */
  connectionsPerShard: Record<string, number>;
  pubsSent: number;
  pubsMeasured: number;
  /** Publications the schedule could not send because the publisher's connection had closed. */
  pubsUnsent: number;
  expectedDeliveries: number;
  receivedDeliveries: number;
  lostDeliveries: number;
  duplicateDeliveries: number;
  /** Deliveries whose publisher does not publish to the receiver's group, or whose seq is impossible. */
  misroutedDeliveries: number;
  deliveriesPerSecond: number;
  latencyMs: LatencySummaryMs;
  /** P99 and max latency of the deliveries received in each second of the window. */
  latencyBySecond: { second: number; count: number; p99: number; max: number }[];
  framesReceived: number;
  batchFrames: number;
  /** Frames checked against JSON.parse, and how many disagreed with the fast parser. */
  verifiedFrames: number;
  parserMismatches: number;
  /** `err` frames by code, and connections closed during the run by close code. */
  serverErrors: Record<string, number>;
  unexpectedCloses: Record<string, number>;
  /** The measured window: from the first measured publication to the end of the drain. */
  windowMs: number;
  /** The same window as wall-clock times (epoch ms): start, end. */
  windowEpochMs: [number, number];
  drainMs: number;
  serverCpu: {
    cpuUs: number;
    cores: number;
    cpuUsPerDelivery: number;
    core: CoreShares | null;
    /** The same per delivery by thread of the server's process: where its CPU went (window-cpu.ts). */
    byThreadUsPerDelivery: { main: number; v8Platform: number; other: number[] } | null;
  };
  /**
   * Cores used during the window by every other user process on the machine (a build, a test run):
   * interference that makes the figures noisier. Near 0 for a clean measurement.
   */
  otherProcessesCores: number;
  /** otherProcessesCores was above 0.05: other work competed for the CPUs; rerun when quiet. */
  disturbed: boolean;
  generator: {
    cpuUs: number;
    cores: number;
    /** The generator's pinned core, all of its time (softirq included), not only this process's. */
    core: CoreShares | null;
    scheduleSlipMs: LatencySummaryMs;
    /** How late the generator's event loop ran its turns, over the window. */
    eventLoopDelayMs: { p50: number; p99: number; max: number };
    /** Why generatorSaturated is true; empty when it is false. */
    saturatedBecause: string[];
    /** Why scheduleSlipped is true, naming the generator's CPU share; null when it is false. */
    slippedBecause: string | null;
  };
  /**
   * The generator, not the server, may have limited the results: it used > 90% of its core
   * (its own CPU, or its core's busy share). Latency figures are then upper bounds.
   */
  generatorSaturated: boolean;
  /**
   * Publications left > 5 ms later than scheduled at P99: the load came in bursts, whatever
   * the cause (a saturated generator, or a host that stops the generator's core: then
   * generatorSaturated is false). Latency figures are then upper bounds too.
   */
  scheduleSlipped: boolean;
  /**
   * The server's RSS (all threads) idle before any client connected, with every client joined,
   * and after the window; per connection: above the idle figure, KiB.
   */
  serverMemory: {
    idleMiB: number | null;
    connectedMiB: number | null;
    endMiB: number | null;
    perConnectionKiB: { connected: number | null; end: number | null };
  };
  /**
   * Server CPU (all threads, /proc) while the clients connected and joined, per connection, µs:
   * the upgrade, the welcome and the join, and on TLS the handshake (a reconnect storm's cost).
   */
  connectCpuUsPerConnection: number | null;
  /** Publishers that lost deliveries, worst first (at most 10): expected vs received. */
  lossByPublisher: { publisher: number; group: number; expected: number; received: number }[];
}

/** A latency summary under the field names this benchmark's JSON has (tools/bench/README.md). */
export interface LatencySummaryMs {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export function summaryMs(h: Histogram): LatencySummaryMs {
  const s = summarize(h);
  return { count: s.count, p50: s.p50Ms, p95: s.p95Ms, p99: s.p99Ms, p999: s.p999Ms, max: s.maxMs, mean: s.meanMs };
}

export function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** A process's CPU over a window by thread, µs. */
export interface ThreadsCpu {
  mainUs: number;
  /** V8's platform threads: its background compiles and garbage collection. */
  v8PlatformUs: number;
  /** Every other thread, busiest first. */
  otherUs: number[];
}

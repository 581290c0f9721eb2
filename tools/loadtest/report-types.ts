/** The shape of a load-test report: what --output writes and --compare reads. */
import type { DeliveryTotals } from './delivery.js';
import type { DuplicateKind } from './duplicates.js';
import type { RecoveryCounters } from './order-check.js';
import type { GradeResult, GradeRow } from './grading.js';
import type { LatencySummary } from '../lib/histogram.js';
import type { ScenarioSpec } from './scenarios.js';
import type { ServerStats } from './server-stats.js';
import type { ServerWindow } from './server-window.js';

export const REPORT_FORMAT = 'ocs-loadtest/1';

export interface SeriesPoint {
  /** seconds since the measurement started (negative: connect and warm-up) */
  t: number;
  connections: number;
  pubsPerS: number;
  deliveriesPerS: number;
  errorsPerS: number;
  /** fan-out latency of deliveries received in this second (corrected), ms */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  serverRssBytes: number | null;
  /** busiest loadgen thread's event-loop utilisation in this second, less its pacer's waiting */
  generatorElu: number;
}

export interface ScenarioReport {
  name: string;
  description: string;
  kind: ScenarioSpec['kind'];
  spec: ScenarioSpec;
  status: 'ok' | 'failed';
  error?: string;
  startedAt: string;
  wallSeconds: number;
  measuredSeconds: number;
  connections: {
    target: number;
    peak: number;
    attempts: number;
    ok: number;
    failed: number;
    successRate: number;
    failures: Record<string, number>;
    unexpectedCloses: number;
    closeCodes: Record<string, number>;
  };
  offered: { pubPerS: number; sendPerS: number; pingPerS: number; deliveriesPerS: number };
  throughput: {
    pubsPerS: number;
    deliveriesPerS: number;
    sendDeliveriesPerS: number;
    /** pub fan-out deliveries + send deliveries per second: what grading calls throughput */
    totalDeliveredPerS: number;
    bytesInPerS: number;
    bytesOutPerS: number;
  };
  latency: {
    fanout: LatencySummary;
    fanoutUncorrected: LatencySummary;
    send: LatencySummary;
    sendUncorrected: LatencySummary;
    ping: LatencySummary;
    pingUncorrected: LatencySummary;
    connect: LatencySummary;
    pubAck: LatencySummary;
    /** the generator's own lag: when it sent (or queued) a scheduled message − when it was due; the corrected figures include it */
    scheduleLag: LatencySummary;
  };
  /** [percentile, ms] points of the merged histograms, for the percentile plot */
  percentileCurves: Record<'fanout' | 'fanoutUncorrected' | 'send' | 'ping' | 'pingUncorrected' | 'connect' | 'scheduleLag', Array<[number, number]>>;
  delivery: DeliveryTotals & {
    pubLossRate: number;
    sendLossRate: number;
    /** deliveries received again, all kinds */
    duplicates: number;
    /** the same, by what explains them (duplicates.ts): only sameConnection is a server defect */
    duplicateKinds: Record<DuplicateKind, number>;
    deliveriesTotal: number;
  };
  errors: {
    /** errors counted for grading: failed connects + unexpected closes + err frames + unacknowledged pubs */
    count: number;
    /** operations: connect attempts + pubs, sends and pings sent */
    operations: number;
    rate: number;
    errFrames: Record<string, number>;
    pubsRejected: number;
    sendsRejected: number;
    /** pubs that waited for the in-flight window: the server was slower than the schedule */
    pubsDeferred: number;
  };
  send: { supported: boolean; note: string; unsupportedReplies: number };
  generator: {
    threads: number;
    transport: string;
    eluPerThread: number[];
    /** CPU of the whole load-tester process over the run, % of one core */
    cpuPercent: number;
    lateSends: number;
    lateFraction: number;
    /** % of the loadgen threads' time the pacer blocked (Atomics.wait) and spun waiting for due times (pacer.ts) */
    pacing: { blockedPercent: number; spinPercent: number };
    /** The scheduling each loadgen thread ran under ("SCHED_FIFO 10", or "normal (why)"): see realtime.ts */
    priority: string[];
    maxBufferedBytes: number;
    bottleneck: boolean;
    reasons: string[];
  };
  server: {
    launched: boolean;
    rssStartBytes: number | null;
    rssEndBytes: number | null;
    rssPeakBytes: number | null;
    /** CPU of the server process over the run, % of one core */
    cpuPercent: number | null;
    stats: ServerStats;
    /** The server's own merged latency over the measured window (server-window.ts): a lower bound of the end-to-end figures. */
    window: ServerWindow;
  };
  ramp?: { peakConnections: number; stoppedBy: 'limit' | 'errors' | 'duration'; note: string };
  /** The reconnect scenario: drops, recoveries and the order check of every user's messages (order-check.ts). */
  recovery?: RecoveryCounters & { exactlyOnce: boolean };
  drift?: {
    windowS: number;
    p50FirstMs: number;
    p50LastMs: number;
    p99FirstMs: number;
    p99LastMs: number;
    serverRssFirstBytes: number | null;
    serverRssLastBytes: number | null;
  };
  timeSeries: SeriesPoint[];
  grade: GradeResult;
  /** What a reader must know that is not a grading criterion (generator limits, untested ops). */
  notes: string[];
}

export interface RunReport {
  format: typeof REPORT_FORMAT;
  startedAt: string;
  finishedAt: string;
  target: { host: string; port: number; launched: boolean; shards: number | null; sendSupported: boolean; sendNote: string };
  machine: { cpus: number; platform: string; node: string };
  options: Record<string, unknown>;
  scenarios: ScenarioReport[];
  overall: GradeResult;
  gradeTable: readonly GradeRow[];
}

/**
 * The contract between the runner (main thread) and the loadgen threads: the plan a thread
 * runs, the messages both ways, and the result it hands back. Only this module and the
 * histogram/delivery modules are shared by both sides.
 */
import { noDuplicates, type DuplicateKind } from './duplicates.js';
import { noRecovery, type RecoveryCounters } from './order-check.js';
import type { ScenarioSpec } from './scenarios.js';

export interface WorkerPlan {
  workerIndex: number;
  workerCount: number;
  host: string;
  port: number;
  /**
   * Every node to connect to (`--host A,B`): slot i connects to others[i % length], so the
   * connections spread evenly; empty: all to host:port.
   */
  spread: Array<{ host: string; port: number }>;
  /** Path of the WebSocket endpoint, without the query. */
  path: string;
  /** User ids are `${userPrefix}${slot}`; group names `${groupPrefix}${group}`. */
  userPrefix: string;
  groupPrefix: string;
  scenario: ScenarioSpec;
  /** Whether the server accepts `send` (a probe found out before the run). */
  sendSupported: boolean;
  /** A loss-accounting guard: pubs acknowledged this close to a receiver's leave are not expected by it. */
  fenceUs: number;
  /** Give up on a connection that has not been welcomed and joined after this long. */
  connectTimeoutMs: number;
  /** Run the thread under SCHED_FIFO when the system allows (realtime.ts). */
  realtime: boolean;
  /** wss://, trusting the system's certificates and NODE_EXTRA_CA_CERTS (--tls). */
  tls: boolean;
}

export type MainToWorker =
  | { type: 'init'; plan: WorkerPlan }
  | { type: 'timeline'; measureStartUs: number; measureEndUs: number }
  | { type: 'ramp-stop'; reason: string }
  | { type: 'abort' };

export type WorkerToMain =
  | { type: 'connected'; workerIndex: number; ok: number; failed: number }
  | { type: 'tick'; workerIndex: number; tUs: number; interval: string; counters: Counters; active: number; elu: number }
  | { type: 'final'; workerIndex: number; result: WorkerResult }
  | { type: 'fatal'; workerIndex: number; message: string };

export interface Counters {
  connectAttempts: number;
  connectOk: number;
  connectFailed: number;
  /** Connections the server closed or dropped that we did not close. */
  unexpectedCloses: number;
  /** Close codes seen on unexpected closes, and failure reasons of connects ("http 503", "timeout"…). */
  closeCodes: Record<string, number>;
  connectFailures: Record<string, number>;
  pubsSent: number;
  pubsAcked: number;
  pubsRejected: number;
  /** Pubs that waited for the in-flight window (the server was slower than the schedule). */
  pubsDeferred: number;
  sendsSent: number;
  sendsAcked: number;
  sendsRejected: number;
  /** `send` answered by E_BAD_FRAME with reason unknown_op: the server does not implement it. */
  sendsUnsupported: number;
  pingsSent: number;
  pongs: number;
  /** Every pub delivery received (a pub reaches every member of its group). */
  deliveries: number;
  sendDeliveries: number;
  /** Deliveries received again, by what explains them (duplicates.ts). */
  duplicates: Record<DuplicateKind, number>;
  /** The reconnect scenario's check of each user's messages of its group, by offset (order-check.ts). */
  recovery: RecoveryCounters;
  /** err frames by code, not counting the ones that mean "send unsupported". */
  errFrames: Record<string, number>;
  bytesIn: number;
  bytesOut: number;
  /** Inside the measurement window (message due time in it). */
  window: { pubsSent: number; sendsSent: number; pingsSent: number; deliveries: number; sendDeliveries: number; errors: number; ops: number };
  /** Sends that left later than due by more than the lag threshold, while not held by the in-flight window. */
  lateSends: number;
  maxBufferedAmount: number;
  /** Time the pacer blocked (Atomics.wait) and spun waiting for due times, µs (pacer.ts). */
  pacingBlockedUs: number;
  pacingSpunUs: number;
}

export function emptyCounters(): Counters {
  return {
    connectAttempts: 0,
    connectOk: 0,
    connectFailed: 0,
    unexpectedCloses: 0,
    closeCodes: {},
    connectFailures: {},
    pubsSent: 0,
    pubsAcked: 0,
    pubsRejected: 0,
    pubsDeferred: 0,
    sendsSent: 0,
    sendsAcked: 0,
    sendsRejected: 0,
    sendsUnsupported: 0,
    pingsSent: 0,
    pongs: 0,
    deliveries: 0,
    sendDeliveries: 0,
    duplicates: noDuplicates(),
    recovery: noRecovery(),
    errFrames: {},
    bytesIn: 0,
    bytesOut: 0,
    window: { pubsSent: 0, sendsSent: 0, pingsSent: 0, deliveries: 0, sendDeliveries: 0, errors: 0, ops: 0 },
    lateSends: 0,
    maxBufferedAmount: 0,
    pacingBlockedUs: 0,
    pacingSpunUs: 0,
  };
}

/** Adds `b` into `a` (numbers add, maps add per key, maxima take the max). */
export function addCounters(a: Counters, b: Counters): Counters {
  const out = structuredClone(a);
  for (const key of Object.keys(b) as Array<keyof Counters>) {
    const v = b[key];
    if (key === 'maxBufferedAmount') out.maxBufferedAmount = Math.max(out.maxBufferedAmount, b.maxBufferedAmount);
    else if (typeof v === 'number') (out[key] as number) += v;
    else {
      const target = out[key] as Record<string, number>;
      for (const [k, n] of Object.entries(v as Record<string, number>)) target[k] = (target[k] ?? 0) + n;
    }
  }
  return out;
}

/** Histograms a thread records, encoded. Microseconds. */
export interface EncodedHistograms {
  /** pub due → delivery to each member (coordinated-omission corrected) */
  fanout: string;
  /** pub actually sent → delivery (uncorrected, for comparison) */
  fanoutRaw: string;
  send: string;
  sendRaw: string;
  /** ping due → pong */
  ping: string;
  pingRaw: string;
  /** connect start → welcome */
  connect: string;
  /** pub due → ack */
  pubAck: string;
  /** how late the generator sent scheduled messages (its own slip): sent (or queued) − due */
  scheduleLag: string;
}

export const HISTOGRAM_NAMES: Array<keyof EncodedHistograms> = ['fanout', 'fanoutRaw', 'send', 'sendRaw', 'ping', 'pingRaw', 'connect', 'pubAck', 'scheduleLag'];

/** Per-publisher record of its pubs, indexed by seq. NaN ack: never acknowledged. */
export interface PubLog {
  slot: number;
  group: number;
  dueUs: Float64Array;
  sentUs: Float64Array;
  ackUs: Float64Array;
}

/** What one receiver slot saw, and when it was a member of its group. */
export interface ReceiverLog {
  slot: number;
  group: number;
  /** Flat [joinedUs, leftUs, joinedUs, leftUs, …] per connection incarnation. */
  intervals: number[];
  /** Whether the last incarnation was still connected at the end of the run. */
  connectedAtEnd: boolean;
  /** Pub seqs received, per publisher slot (bitsets). */
  pubSeen: Array<{ from: number; bits: Uint8Array }>;
  /** Send seqs received, per sender slot (bitsets). */
  sendSeen: Array<{ from: number; bits: Uint8Array }>;
}

export interface SendLog {
  slot: number;
  to: Int32Array;
  dueUs: Float64Array;
  ackUs: Float64Array;
}

export interface DeliveryData {
  pubs: PubLog[];
  receivers: ReceiverLog[];
  sends: SendLog[];
}

export interface WorkerResult {
  histograms: EncodedHistograms;
  counters: Counters;
  delivery: DeliveryData;
  /** Event-loop utilisation of the thread during the measurement window (1 = saturated). */
  elu: number;
  /** Peak connections this thread held. */
  peakActive: number;
  transport: string;
  /** The scheduling the thread ran under ("SCHED_FIFO 10", or "normal (why)"). */
  priority: string;
}

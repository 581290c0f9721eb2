// Runs one broadcast plan against one server: connect and join every client, publish on a
// fixed schedule, record every delivery, drain, and report. Knows the ocs.v1 frames it needs
// (welcome, join/joined, pub, msg/batch, err) and nothing about how the server was started.
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { Histogram } from 'hdr-histogram-js';
import { connectWs, type WsClient } from '../../wsclient/client.js';
import { type BroadcastPlan, groupOf, isMeasured, publisherOf, seqOf } from './broadcast-plan.js';
import { FrameKind } from '../../lib/frame-scan.js';
import { parseDeliveries, sameStamps, verifyDeliveries } from './deliveries.js';
import { newHistogram, recordMs, summarize } from '../../lib/histogram.js';
import {
  cpuShares,
  cpuUsBetween,
  processTree,
  readCpuTimes,
  snapshotProcesses,
  type CpuTimes,
  type ProcessSnapshot,
} from '../../lib/proc.js';

export interface LoadTarget {
  host: string;
  port: number;
  /** Request path for a user, e.g. `/ws?user=u1`. */
  pathFor(user: string): string;
  /** The server's process id, for its CPU time (threads and child processes included). */
  serverPid: number;
}

export interface LoadSettings {
  /** Connections being opened at the same time. */
  connectConcurrency: number;
  /** Longest wait for the window's deliveries after the last publication. */
  drainS: number;
  /** One frame in this many is also parsed with JSON.parse and compared. 0: never. */
  verifyEvery: number;
  /** CPUs (as in taskset -c) whose busy share to report, by role; null when not pinned. */
  serverCpu: string | null;
  generatorCpu: string | null;
  log(line: string): void;
}

export interface LoadResult {
  connectMs: number;
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
  drainMs: number;
  serverCpu: { cpuUs: number; cores: number; cpuUsPerDelivery: number; core: CoreShares | null };
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
  };
  /**
   * The generator, not the server, may have limited the results: it used > 90% of its core,
   * or its publish schedule slipped > 5 ms at P99. Latency figures are then upper bounds.
   */
  generatorSaturated: boolean;
  /** Publishers that lost deliveries, worst first (at most 10): expected vs received. */
  lossByPublisher: { publisher: number; group: number; expected: number; received: number }[];
}

type CoreShares = ReturnType<typeof cpuShares>;

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

function summaryMs(h: Histogram): LatencySummaryMs {
  const s = summarize(h);
  return { count: s.count, p50: s.p50Ms, p95: s.p95Ms, p99: s.p99Ms, p999: s.p999Ms, max: s.maxMs, mean: s.meanMs };
}

const KTHREADD_PID = 2;
/** Other processes using more than this many cores during the window make a run disturbed. */
const DISTURBED_CORES = 0.05;
const JOIN_TIMEOUT_MS = 15_000;
const DRAIN_POLL_MS = 20;
/** The generator counts as saturated above this share of its core (process or whole core)... */
const SATURATED_CORES = 0.9;
/** ...or when its publications leave this much later than scheduled at P99. */
const SATURATED_SLIP_P99_MS = 5;

export async function runBroadcastLoad(plan: BroadcastPlan, target: LoadTarget, settings: LoadSettings): Promise<LoadResult> {
  const run = new BroadcastRun(plan, target, settings);
  try {
    await run.connectAll();
    await run.publishAndDrain();
    return run.result();
  } finally {
    run.disconnectAll();
  }
}

class BroadcastRun {
  private readonly plan: BroadcastPlan;
  private readonly target: LoadTarget;
  private readonly settings: LoadSettings;
  private readonly clients: WsClient[] = [];
  /** Per connection: one bit per (publisher slot, seq) already received, to find duplicates. */
  private readonly seen: Uint8Array[] = [];
  private readonly latency = newHistogram();
  private readonly latencyBySecond: Histogram[] = [];
  private readonly loopDelay = monitorEventLoopDelay({ resolution: 1 });
  private readonly slip = newHistogram();
  private readonly receivedByPublisher: number[];
  private readonly connectionsPerShard: Record<string, number> = {};
  private readonly serverErrors: Record<string, number> = {};
  private readonly unexpectedCloses: Record<string, number> = {};
  /** Set before we close the clients ourselves: any close before that is unexpected. */
  private tearingDown = false;

  private received = 0;
  private duplicates = 0;
  private misrouted = 0;
  private frames = 0;
  private batchFrames = 0;
  private verifiedFrames = 0;
  private parserMismatches = 0;
  private pubsSent = 0;
  private pubsUnsent = 0;
  /** Deliveries that unsent measured publications would have caused; not expected any more. */
  private deliveriesNotExpected = 0;

  private connectMs = 0;
  private windowStart = 0;
  private windowEnd = 0;
  private drainMs = 0;
  private processesStart: ProcessSnapshot = new Map();
  private serverCpuUs = 0;
  /** CPU of every user process other than the server and this generator: interference. */
  private otherCpuUs = 0;
  private generatorCpuStart: NodeJS.CpuUsage = { user: 0, system: 0 };
  private generatorCpuUs = 0;
  private serverCoreStart: CpuTimes | null = null;
  private generatorCoreStart: CpuTimes | null = null;
  private serverCore: CoreShares | null = null;
  private generatorCore: CoreShares | null = null;

  constructor(plan: BroadcastPlan, target: LoadTarget, settings: LoadSettings) {
    this.plan = plan;
    this.target = target;
    this.settings = settings;
    this.receivedByPublisher = new Array<number>(plan.publishers).fill(0);
  }

  // -------------------------------------------------------------------------------------
  // Connecting

  async connectAll(): Promise<void> {
    const started = performance.now();
    let next = 0;
    let failure: Error | null = null;
    const worker = async (): Promise<void> => {
      while (next < this.plan.connections && failure === null) {
        const c = next++;
        try {
          await this.connectOne(c);
        } catch (err) {
          failure ??= err as Error;
        }
        if (c % 500 === 499) this.settings.log(`  ${c + 1} connections joined`);
      }
    };
    await Promise.all(Array.from({ length: this.settings.connectConcurrency }, worker));
    if (failure !== null) throw failure;
    this.connectMs = Math.round(performance.now() - started);
  }

  /** Opens connection c, waits for welcome, joins its group, resolves on joined. */
  private connectOne(c: number): Promise<void> {
    const group = groupOf(c, this.plan.groups);
    const slots = this.plan.publishersInGroup[group]!;
    this.seen[c] = new Uint8Array(Math.ceil((slots * this.plan.seqLimit) / 8));
    return new Promise<void>((resolve, reject) => {
      let joined = false;
      const timer = setTimeout(() => fail(new Error(`connection ${c}: no joined within ${JOIN_TIMEOUT_MS} ms`)), JOIN_TIMEOUT_MS);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        reject(err);
      };
      const onControl = (frame: { op?: string; shard?: unknown; code?: string; message?: string }): void => {
        if (frame.op === 'welcome') {
          const shard = String(frame.shard ?? '?');
          this.connectionsPerShard[shard] = (this.connectionsPerShard[shard] ?? 0) + 1;
          client.send(`{"op":"join","group":"g${group}","ref":"j${c}"}`);
        } else if (frame.op === 'joined') {
          joined = true;
          clearTimeout(timer);
          resolve();
        } else if (frame.op === 'err') {
          const code = String(frame.code);
          this.serverErrors[code] = (this.serverErrors[code] ?? 0) + 1;
          if (!joined) fail(new Error(`connection ${c}: server error ${code}: ${frame.message ?? ''}`));
        }
      };
      const client = connectWs({
        host: this.target.host,
        port: this.target.port,
        path: this.target.pathFor(`u${c}`),
        onMessage: (payload) => this.onFrame(c, group, payload, onControl),
        onError: (err) => {
          if (!joined) fail(new Error(`connection ${c}: ${err.message}`));
        },
        onClose: (code, reason) => {
          if (!joined) fail(new Error(`connection ${c} closed before joining: ${code} ${reason}`));
          else if (!this.tearingDown) this.unexpectedCloses[code] = (this.unexpectedCloses[code] ?? 0) + 1;
        },
      });
      this.clients[c] = client;
    });
  }

  // -------------------------------------------------------------------------------------
  // Receiving

  // The frame being parsed, for onParsedDelivery: one callback for all frames instead of a
  // closure per frame (the hot path runs ~100k times a second).
  private frameConnection = 0;
  private frameGroup = 0;
  private frameReceivedAt = 0;
  private readonly onParsedDelivery = (publisher: number, seq: number, sentAt: number): void =>
    this.onDelivery(this.frameConnection, this.frameGroup, publisher, seq, sentAt, this.frameReceivedAt);

  private onFrame(c: number, group: number, payload: Buffer, onControl: (frame: Record<string, unknown>) => void): void {
    this.frames++;
    // One clock read per frame: every msg of a batch arrived at the same moment.
    const now = performance.timeOrigin + performance.now();
    const verify = this.settings.verifyEvery > 0 && this.frames % this.settings.verifyEvery === 0;
    this.frameConnection = c;
    this.frameGroup = group;
    this.frameReceivedAt = now;
    const kind = verify ? this.verifyFrame(c, group, payload, now) : parseDeliveries(payload, this.onParsedDelivery);
    if (kind === FrameKind.Batch) this.batchFrames++;
    else if (kind === FrameKind.Other) this.onControlFrame(payload, onControl);
  }

  private onControlFrame(payload: Buffer, onControl: (frame: Record<string, unknown>) => void): void {
    let frame: unknown;
    try {
      frame = JSON.parse(payload.toString('utf8'));
    } catch {
      this.serverErrors['(frame is not JSON)'] = (this.serverErrors['(frame is not JSON)'] ?? 0) + 1;
      return;
    }
    if (typeof frame === 'object' && frame !== null) onControl(frame as Record<string, unknown>);
  }

  /**
   * Parses one frame both ways, counts a disagreement, and records what JSON.parse found.
   */
  private verifyFrame(c: number, group: number, payload: Buffer, now: number): FrameKind {
    this.verifiedFrames++;
    const fast: number[][] = [];
    const kind = parseDeliveries(payload, (p, s, t) => fast.push([p, s, t]));
    const reference = verifyDeliveries(payload);
    if (reference === null) {
      if (kind !== FrameKind.Other) this.parserMismatches++;
      return FrameKind.Other;
    }
    if (kind === FrameKind.Other || !sameStamps(fast, reference)) this.parserMismatches++;
    for (const [p, s, t] of reference) this.onDelivery(c, group, p, s, t, now);
    return kind === FrameKind.Other ? FrameKind.Msg : kind;
  }

  private onDelivery(c: number, group: number, publisher: number, seq: number, sentAt: number, now: number): void {
    const plan = this.plan;
    if (plan.publisherGroup[publisher] !== group || seq < 0 || seq >= plan.seqLimit || !Number.isInteger(seq)) {
      this.misrouted++;
      return;
    }
    const bit = plan.publisherSlot[publisher]! * plan.seqLimit + seq;
    const seen = this.seen[c]!;
    const mask = 1 << (bit & 7);
    if (seen[bit >>> 3]! & mask) {
      this.duplicates++;
      return;
    }
    seen[bit >>> 3]! |= mask;
    if (!isMeasured(plan, publisher, seq)) return; // warm-up
    this.received++;
    this.receivedByPublisher[publisher]!++;
    recordMs(this.latency, now - sentAt);
    const second = Math.floor((now - performance.timeOrigin - this.windowStart) / 1000);
    if (second >= 0) recordMs((this.latencyBySecond[second] ??= newHistogram()), now - sentAt);
  }

  // -------------------------------------------------------------------------------------
  // Publishing

  /**
   * One scheduler for all publishers: publication k is due at start + k * intervalMs; each
   * turn sends everything due (catching up after a late turn, never skipping) and sleeps
   * until the next is due. No timer per message.
   */
  publishAndDrain(): Promise<void> {
    const plan = this.plan;
    const start = performance.now() + 10;
    let k = 0;
    return new Promise<void>((resolve) => {
      const turn = (): void => {
        const now = performance.now();
        while (k < plan.totalPubs && start + k * plan.intervalMs <= now) {
          if (k === plan.firstMeasured) this.startWindow();
          this.publish(k, start + k * plan.intervalMs);
          k++;
        }
        if (k < plan.totalPubs) {
          setTimeout(turn, Math.max(0, start + k * plan.intervalMs - performance.now()));
        } else {
          if (plan.firstMeasured >= plan.totalPubs) this.startWindow(); // empty window
          void this.drain().then(resolve);
        }
      };
      setTimeout(turn, 10);
    });
  }

  private publish(k: number, dueAt: number): void {
    const p = publisherOf(k, this.plan.publishers);
    const client = this.clients[this.plan.publisherConnection[p]!]!;
    if (!client.isOpen) {
      this.pubsUnsent++;
      if (k >= this.plan.firstMeasured) this.deliveriesNotExpected += this.plan.groupSize[this.plan.publisherGroup[p]!]!;
      return;
    }
    const sentAt = performance.now();
    const t = performance.timeOrigin + sentAt;
    client.send(
      `{"op":"pub","group":"g${this.plan.publisherGroup[p]}","data":{"t":${t},"s":${seqOf(k, this.plan.publishers)},"p":${p}}}`,
    );
    this.pubsSent++;
    if (k >= this.plan.firstMeasured) recordMs(this.slip, sentAt - dueAt);
  }

  private startWindow(): void {
    this.settings.log(`  warm-up done, measuring ${this.plan.durationS} s`);
    this.processesStart = snapshotProcesses();
    this.generatorCpuStart = process.cpuUsage();
    this.serverCoreStart = this.coreTimes(this.settings.serverCpu);
    this.generatorCoreStart = this.coreTimes(this.settings.generatorCpu);
    this.windowStart = performance.now();
    this.loopDelay.enable();
  }

  /** Waits until the window's deliveries are all in, or drainS has passed. */
  private async drain(): Promise<void> {
    const publishedAt = performance.now();
    const deadline = publishedAt + this.settings.drainS * 1000;
    while (this.received < this.expectedDeliveries() && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
    }
    this.windowEnd = performance.now();
    this.loopDelay.disable();
    this.drainMs = Math.round(this.windowEnd - publishedAt);
    const processesEnd = snapshotProcesses();
    const server = processTree(processesEnd, this.target.serverPid);
    // Ours: this process, its parent (the idle taskset re-exec wrapper) and its children,
    // the server among them. Kernel threads (children of kthreadd, pid 2) are left out too:
    // ksoftirqd doing our loopback TCP work is already in the cores' softirq share.
    const ours = processTree(processesEnd, process.pid).add(process.ppid);
    for (const kernelThread of processTree(processesEnd, KTHREADD_PID)) ours.add(kernelThread);
    this.serverCpuUs = cpuUsBetween(this.processesStart, processesEnd, server);
    const allCpuUs = cpuUsBetween(this.processesStart, processesEnd);
    this.otherCpuUs = Math.max(0, allCpuUs - cpuUsBetween(this.processesStart, processesEnd, ours));
    const cpu = process.cpuUsage(this.generatorCpuStart);
    this.generatorCpuUs = cpu.user + cpu.system;
    this.serverCore = this.coreShares(this.serverCoreStart, this.settings.serverCpu);
    this.generatorCore = this.coreShares(this.generatorCoreStart, this.settings.generatorCpu);
  }

  private expectedDeliveries(): number {
    return this.plan.expectedDeliveries - this.deliveriesNotExpected;
  }

  private coreTimes(cpu: string | null): CpuTimes | null {
    return cpu === null ? null : readCpuTimes(cpu);
  }

  private coreShares(start: CpuTimes | null, cpu: string | null): CoreShares | null {
    const end = this.coreTimes(cpu);
    return start && end ? cpuShares(start, end) : null;
  }

  // -------------------------------------------------------------------------------------
  // Results and teardown

  disconnectAll(): void {
    this.tearingDown = true;
    for (const client of this.clients) client?.destroy();
  }

  result(): LoadResult {
    const plan = this.plan;
    const windowUs = (this.windowEnd - this.windowStart) * 1000;
    const serverCpuUs = this.serverCpuUs;
    const generatorCores = this.generatorCpuUs / windowUs;
    const slip = summaryMs(this.slip);
    const saturatedBecause: string[] = [];
    if (generatorCores > SATURATED_CORES) saturatedBecause.push(`generator used ${round(generatorCores, 2)} of a core`);
    if (this.generatorCore && this.generatorCore.busy > SATURATED_CORES) {
      saturatedBecause.push(`generator core ${this.settings.generatorCpu} was ${this.generatorCore.busy} busy (softirq ${this.generatorCore.softirq})`);
    }
    if (slip.p99 > SATURATED_SLIP_P99_MS) saturatedBecause.push(`publish schedule slipped ${slip.p99} ms at P99`);
    const lossByPublisher = plan.measuredPubsByPublisher
      .map((pubs, p) => ({
        publisher: p,
        group: plan.publisherGroup[p]!,
        expected: pubs * plan.groupSize[plan.publisherGroup[p]!]!,
        received: this.receivedByPublisher[p]!,
      }))
      .filter((row) => row.received < row.expected)
      .sort((a, b) => b.expected - b.received - (a.expected - a.received))
      .slice(0, 10);
    return {
      connectMs: this.connectMs,
      connectionsPerShard: this.connectionsPerShard,
      pubsSent: this.pubsSent,
      pubsMeasured: plan.totalPubs - plan.firstMeasured,
      pubsUnsent: this.pubsUnsent,
      expectedDeliveries: this.expectedDeliveries(),
      receivedDeliveries: this.received,
      lostDeliveries: this.expectedDeliveries() - this.received,
      duplicateDeliveries: this.duplicates,
      misroutedDeliveries: this.misrouted,
      deliveriesPerSecond: Math.round(this.received / plan.durationS),
      latencyMs: summaryMs(this.latency),
      latencyBySecond: Array.from(this.latencyBySecond, (h, second) => {
        const summary = h ? summaryMs(h) : null;
        return { second, count: summary?.count ?? 0, p99: summary?.p99 ?? 0, max: summary?.max ?? 0 };
      }),
      framesReceived: this.frames,
      batchFrames: this.batchFrames,
      verifiedFrames: this.verifiedFrames,
      parserMismatches: this.parserMismatches,
      serverErrors: this.serverErrors,
      unexpectedCloses: this.unexpectedCloses,
      windowMs: Math.round(windowUs / 1000),
      drainMs: this.drainMs,
      serverCpu: {
        cpuUs: Math.round(serverCpuUs),
        cores: round(serverCpuUs / windowUs, 3),
        cpuUsPerDelivery: round(serverCpuUs / Math.max(1, this.received), 3),
        core: this.serverCore,
      },
      otherProcessesCores: round(this.otherCpuUs / windowUs, 3),
      disturbed: this.otherCpuUs / windowUs > DISTURBED_CORES,
      generator: {
        cpuUs: this.generatorCpuUs,
        cores: round(generatorCores, 3),
        core: this.generatorCore,
        scheduleSlipMs: slip,
        eventLoopDelayMs: {
          p50: round(this.loopDelay.percentile(50) / 1e6, 3),
          p99: round(this.loopDelay.percentile(99) / 1e6, 3),
          max: round(this.loopDelay.max / 1e6, 3),
        },
        saturatedBecause,
      },
      generatorSaturated: saturatedBecause.length > 0,
      lossByPublisher,
    };
  }
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

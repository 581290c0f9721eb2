// Runs one broadcast plan against one server: connect and join every client, publish on a
// fixed schedule, record every delivery (broadcast-receipts.ts), drain, and report. Knows the
// ocs.v1 frames it needs (welcome, join/joined, pub, msg/batch, err) and nothing about how
// the server was started.
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { connectWs, type WsClient } from '../../wsclient/client.js';
import { newHistogram, recordMs } from '../../lib/histogram.js';
import { processCpuSeconds, processRssBytes } from '../../lib/proc.js';
import { type BroadcastPlan, groupOf, publisherOf, seqOf } from './broadcast-plan.js';
import { round, summaryMs, type LoadResult, type LoadSettings, type LoadTarget, type ThreadsCpu } from './broadcast-load-types.js';
import { BroadcastReceipts } from './broadcast-receipts.js';
import { WindowCpu } from './window-cpu.js';

/** Other processes using more than this many cores during the window make a run disturbed. */
const DISTURBED_CORES = 0.05;
const JOIN_TIMEOUT_MS = 15_000;
/** Attempts to land a connection on its group's shard (placement by-shard); each is a coin toss per shard. */
export const PLACEMENT_ATTEMPTS = 60;
const DRAIN_POLL_MS = 20;
/** The generator counts as saturated above this share of its core (process or whole core). */
const SATURATED_CORES = 0.9;
/**
 * Publications leaving this much later than scheduled at P99 make a run's schedule slipped,
 * whatever the cause: a saturated generator, or gaps in its running (the host's, on a busy VM).
 */
const SLIPPED_P99_MS = 5;

export async function runBroadcastLoad(plan: BroadcastPlan, target: LoadTarget, settings: LoadSettings): Promise<LoadResult> {
  const run = new BroadcastRun(plan, target, settings);
  try {
    const idle = processRssBytes(target.serverPid);
    const cpuBeforeConnect = processCpuSeconds(target.serverPid);
    await run.connectAll();
    const cpuAfterConnect = processCpuSeconds(target.serverPid);
    const connected = processRssBytes(target.serverPid);
    await run.publishAndDrain();
    return {
      ...run.result(),
      serverMemory: serverMemory(plan.connections, idle, connected, processRssBytes(target.serverPid)),
      connectCpuUsPerConnection: cpuBeforeConnect === null || cpuAfterConnect === null ? null : round(((cpuAfterConnect - cpuBeforeConnect) * 1e6) / plan.connections, 1),
    };
  } finally {
    run.disconnectAll();
  }
}

/** The server's resident memory before the clients connected, once they had, and after the window. */
function serverMemory(connections: number, idle: number | null, connected: number | null, end: number | null): LoadResult['serverMemory'] {
  const mib = (b: number | null): number | null => (b === null ? null : round(b / 2 ** 20, 1));
  const perConnection = (b: number | null): number | null => (b === null || idle === null ? null : round((b - idle) / connections / 1024, 2));
  return {
    idleMiB: mib(idle),
    connectedMiB: mib(connected),
    endMiB: mib(end),
    perConnectionKiB: { connected: perConnection(connected), end: perConnection(end) },
  };
}

class BroadcastRun {
  private readonly plan: BroadcastPlan;
  private readonly target: LoadTarget;
  private readonly settings: LoadSettings;
  private readonly clients: WsClient[] = [];
  private readonly receipts: BroadcastReceipts;
  private readonly cpu: WindowCpu;
  private readonly loopDelay = monitorEventLoopDelay({ resolution: 1 });
  private readonly slip = newHistogram();
  private readonly connectionsPerShard: Record<string, number> = {};
  private readonly unexpectedCloses: Record<string, number> = {};
  /** Set before we close the clients ourselves: any close before that is unexpected. */
  private tearingDown = false;

  private reconnects = 0;
  private pubsSent = 0;
  private pubsUnsent = 0;
  /** Deliveries that unsent measured publications would have caused; not expected any more. */
  private deliveriesNotExpected = 0;

  private connectMs = 0;
  private windowEnd = 0;
  private drainMs = 0;

  constructor(plan: BroadcastPlan, target: LoadTarget, settings: LoadSettings) {
    this.plan = plan;
    this.target = target;
    this.settings = settings;
    this.receipts = new BroadcastReceipts(plan, settings.verifyEvery);
    this.cpu = new WindowCpu([target.serverPid, ...(target.otherPids ?? [])], settings.serverCpu, settings.generatorCpu);
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

  /**
   * Opens connection c, waits for welcome, joins its group, resolves on joined. With placement
   * by-shard, a connection that the kernel put on another shard than its group's is closed and
   * opened again (the kernel picks a shard per connection).
   */
  private async connectOne(c: number): Promise<void> {
    const group = groupOf(c, this.plan.groups);
    const shards = this.target.shards;
    const wanted = this.settings.placement === 'by-shard' && shards > 1 ? group % shards : null;
    this.receipts.addConnection(c, group);
    for (let attempt = 1; ; attempt++) {
      const landed = await this.openOne(c, group, wanted);
      if (landed) return;
      this.reconnects++;
      if (attempt >= PLACEMENT_ATTEMPTS) throw new Error(`connection ${c}: never landed on shard ${wanted} in ${PLACEMENT_ATTEMPTS} attempts`);
    }
  }

  /** One attempt of connectOne: true once joined; false when it landed on another shard than `wanted` (it is destroyed). */
  private openOne(c: number, group: number, wanted: number | null): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      let joined = false;
      let misplaced = false;
      const timer = setTimeout(() => fail(new Error(`connection ${c}: no joined within ${JOIN_TIMEOUT_MS} ms`)), JOIN_TIMEOUT_MS);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        reject(err);
      };
      const onControl = (frame: { op?: string; shard?: unknown; code?: string; message?: string }): void => {
        if (misplaced) return;
        if (frame.op === 'welcome') {
          if (wanted !== null && frame.shard !== wanted) {
            misplaced = true;
            clearTimeout(timer);
            client.destroy();
            resolve(false);
            return;
          }
          const shard = String(frame.shard ?? '?');
          this.connectionsPerShard[shard] = (this.connectionsPerShard[shard] ?? 0) + 1;
          client.send(`{"op":"join","group":"g${group}","ref":"j${c}"}`);
        } else if (frame.op === 'joined') {
          joined = true;
          clearTimeout(timer);
          resolve(true);
        } else if (frame.op === 'err') {
          const code = String(frame.code);
          this.receipts.countServerError(code);
          if (!joined) fail(new Error(`connection ${c}: server error ${code}: ${frame.message ?? ''}`));
        }
      };
      const client = connectWs({
        host: this.target.host,
        port: this.target.portFor?.(c) ?? this.target.port,
        path: this.target.pathFor(`u${c}`),
        ...(this.target.tls ? { tls: this.target.tls } : {}),
        onMessage: (payload) => this.receipts.onFrame(c, group, payload, onControl),
        onError: (err) => {
          if (!joined && !misplaced) fail(new Error(`connection ${c}: ${err.message}`));
        },
        onClose: (code, reason) => {
          if (misplaced) return;
          if (!joined) fail(new Error(`connection ${c} closed before joining: ${code} ${reason}`));
          else if (!this.tearingDown) this.unexpectedCloses[code] = (this.unexpectedCloses[code] ?? 0) + 1;
        },
      });
      this.clients[c] = client;
    });
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
          if (k === 0) void this.settings.onWindow?.('warmup');
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
    this.cpu.start();
    this.receipts.windowStart = performance.now();
    this.loopDelay.enable();
    this.settings.onWindow?.('start');
  }

  /** Waits until the window's deliveries are all in, or drainS has passed. */
  private async drain(): Promise<void> {
    const publishedAt = performance.now();
    const deadline = publishedAt + this.settings.drainS * 1000;
    while (this.receipts.received < this.expectedDeliveries() && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
    }
    this.windowEnd = performance.now();
    this.loopDelay.disable();
    this.drainMs = Math.round(this.windowEnd - publishedAt);
    this.cpu.stop();
    await this.settings.onWindow?.('end');
  }

  private expectedDeliveries(): number {
    return this.plan.expectedDeliveries - this.deliveriesNotExpected;
  }

  // -------------------------------------------------------------------------------------
  // Results and teardown

  disconnectAll(): void {
    this.tearingDown = true;
    for (const client of this.clients) client?.destroy();
  }

  result(): Omit<LoadResult, 'serverMemory' | 'connectCpuUsPerConnection'> {
    const plan = this.plan;
    const r = this.receipts;
    const cpu = this.cpu;
    const windowUs = (this.windowEnd - r.windowStart) * 1000;
    const serverCpuUs = cpu.serverCpuUs;
    const generatorCores = cpu.generatorCpuUs / windowUs;
    const slip = summaryMs(this.slip);
    const saturatedBecause: string[] = [];
    if (generatorCores > SATURATED_CORES) saturatedBecause.push(`generator used ${round(generatorCores, 2)} of a core`);
    if (cpu.generatorCore && cpu.generatorCore.busy > SATURATED_CORES) {
      saturatedBecause.push(`generator core ${this.settings.generatorCpu} was ${cpu.generatorCore.busy} busy (softirq ${cpu.generatorCore.softirq})`);
    }
    const slippedBecause = slip.p99 <= SLIPPED_P99_MS ? null : slipCause(slip.p99, generatorCores, saturatedBecause.length > 0, round(this.loopDelay.max / 1e6, 1));
    return {
      connectMs: this.connectMs,
      placement: this.settings.placement,
      reconnects: this.reconnects,
      connectionsPerShard: this.connectionsPerShard,
      pubsSent: this.pubsSent,
      pubsMeasured: plan.totalPubs - plan.firstMeasured,
      pubsUnsent: this.pubsUnsent,
      expectedDeliveries: this.expectedDeliveries(),
      receivedDeliveries: r.received,
      lostDeliveries: this.expectedDeliveries() - r.received,
      duplicateDeliveries: r.duplicates,
      misroutedDeliveries: r.misrouted,
      deliveriesPerSecond: Math.round(r.received / plan.durationS),
      latencyMs: summaryMs(r.latency),
      latencyBySecond: r.bySecond(),
      framesReceived: r.frames,
      batchFrames: r.batchFrames,
      verifiedFrames: r.verifiedFrames,
      parserMismatches: r.parserMismatches,
      serverErrors: r.serverErrors,
      unexpectedCloses: this.unexpectedCloses,
      windowMs: Math.round(windowUs / 1000),
      windowEpochMs: [Math.round(performance.timeOrigin + r.windowStart), Math.round(performance.timeOrigin + this.windowEnd)],
      drainMs: this.drainMs,
      serverCpu: {
        cpuUs: Math.round(serverCpuUs),
        cores: round(serverCpuUs / windowUs, 3),
        cpuUsPerDelivery: round(serverCpuUs / Math.max(1, r.received), 3),
        core: cpu.serverCore,
        byThreadUsPerDelivery: perDelivery(cpu.serverThreads, r.received),
      },
      otherProcessesCores: round(cpu.otherCpuUs / windowUs, 3),
      disturbed: cpu.otherCpuUs / windowUs > DISTURBED_CORES,
      generator: {
        cpuUs: cpu.generatorCpuUs,
        cores: round(generatorCores, 3),
        core: cpu.generatorCore,
        scheduleSlipMs: slip,
        eventLoopDelayMs: {
          p50: round(this.loopDelay.percentile(50) / 1e6, 3),
          p99: round(this.loopDelay.percentile(99) / 1e6, 3),
          max: round(this.loopDelay.max / 1e6, 3),
        },
        saturatedBecause,
        slippedBecause,
      },
      generatorSaturated: saturatedBecause.length > 0,
      scheduleSlipped: slippedBecause !== null,
      lossByPublisher: r.lossByPublisher(),
    };
  }
}

/**
 * Why the schedule slipped: the generator's CPU, or stalls while it had CPU to spare (the host
 * taking its core, or its own pauses, which its event loop's delay shows).
 */
function slipCause(p99Ms: number, generatorCores: number, saturated: boolean, loopDelayMaxMs: number): string {
  const slipped = `publish schedule slipped ${p99Ms} ms at P99`;
  if (saturated) return `${slipped}, the generator saturated`;
  return `${slipped} with the generator at ${round(generatorCores, 2)} of a core (its event loop up to ${loopDelayMaxMs} ms late): stalls, not saturation`;
}

function perDelivery(threads: ThreadsCpu | null, deliveries: number): LoadResult['serverCpu']['byThreadUsPerDelivery'] {
  if (threads === null) return null;
  const per = (us: number): number => round(us / Math.max(1, deliveries), 3);
  return { main: per(threads.mainUs), v8Platform: per(threads.v8PlatformUs), other: threads.otherUs.map(per) };
}

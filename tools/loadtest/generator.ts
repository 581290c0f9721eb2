/**
 * The load generator that runs inside one loadgen thread (tools/workers/loadgen.ts is its entry).
 * It owns the connection slots `slot % workerCount === workerIndex` and drives them from one
 * loop, paced to send each message at its due time (pacer.ts): this module is the loop, the
 * time line and the scenario's dynamics; the connections (connection-pool.ts), the schedule
 * of sends (sender.ts), the frames received (receiver.ts) and the figures (measurements.ts)
 * are modules of their own.
 *
 * Time line (µs, monoUs()): connect the scenario's connections at `connect_rate` → tell the
 * runner → the runner broadcasts the measurement window (start = all threads connected +
 * warm-up) → traffic flows from the moment each connection has joined its group, and only
 * messages due inside the window are measured → at the window's end no new message is
 * scheduled; late ones (held by the in-flight window) may still leave during the drain →
 * everything closes.
 */
import { performance } from 'node:perf_hooks';
import { monoUs } from './clock.js';
import { ConnectionPool } from './connection-pool.js';
import { Measurements } from './measurements.js';
import { Pacer } from './pacer.js';
import { enterRealtime } from './realtime.js';
import { Receiver } from './receiver.js';
import { Sender } from './sender.js';
import type { Slot } from './slots.js';
import type { WorkerPlan, WorkerToMain } from './types.js';
import { collectWorkerResult } from './worker-result.js';

/** Connecting, timeouts, the scenario's dynamics and the end of the window are checked this often. */
const HOUSEKEEPING_US = 1_000;
const TIMER_MS = 1;
const REPORT_EVERY_US = 1_000_000;
/** A loop turn that sends this many times in a row lets the event loop run before going on. */
const MAX_SENDS_PER_TURN = 1_000;

type Elu = ReturnType<typeof performance.eventLoopUtilization>;
/** Event-loop use, and the pacer's waiting so far, at one moment. */
interface LoadSnapshot {
  elu: Elu;
  pacingUs: number;
}

export class LoadGenerator {
  private readonly plan: WorkerPlan;
  private readonly post: (m: WorkerToMain) => void;
  private readonly m = new Measurements();
  private priority = 'normal';
  private readonly pool: ConnectionPool;
  private readonly sender: Sender;
  private readonly receiver: Receiver;
  private readonly pacer = new Pacer();

  private baseSlots: Slot[] = [];
  private extraSlots: Slot[] = [];
  private connectQueue: Slot[] = [];
  private connectRatePerS: number;
  private nextConnectUs = 0;
  private baseSettled = false;
  private rampStopped = false;
  private spikeStarted = false;
  private spikeEnded = false;
  private nextChurnUs = Number.NaN;
  private dropped = false;
  private stopping = false;
  private finished = false;
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private lastHousekeepingUs = Number.NEGATIVE_INFINITY;
  private lastReportUs = 0;
  /** At the start of the window, and at the last report. */
  private loadAtStart: LoadSnapshot | null = null;
  private loadAtReport: LoadSnapshot = this.loadSnapshot();
  private eluWindow = 0;

  constructor(plan: WorkerPlan, post: (m: WorkerToMain) => void) {
    this.plan = plan;
    this.post = post;
    this.pool = new ConnectionPool(plan, this.m, (c, payload) => this.receiver.onMessage(c, payload));
    this.sender = new Sender(plan, this.m, this.pool);
    this.receiver = new Receiver(this.m, this.pool, this.sender, plan.scenario.kind === 'reconnect');
    const s = plan.scenario;
    this.connectRatePerS = s.connectRate / plan.workerCount;
    const extra = s.kind === 'ramp' && s.ramp ? Math.max(0, s.ramp.max - s.connections) : s.kind === 'spike' && s.spike ? s.spike.connections : 0;
    for (let slot = plan.workerIndex; slot < s.connections + extra; slot += plan.workerCount) {
      const st = this.pool.addSlot(slot);
      (slot < s.connections ? this.baseSlots : this.extraSlots).push(st);
    }
  }

  start(): void {
    if (this.plan.realtime) this.priority = enterRealtime();
    this.connectQueue = [...this.baseSlots];
    this.nextConnectUs = monoUs();
    this.lastReportUs = monoUs();
    this.step();
  }

  setTimeline(measureStartUs: number, measureEndUs: number): void {
    this.m.startUs = measureStartUs;
    this.m.endUs = measureEndUs;
  }

  stopRamp(): void {
    this.rampStopped = true;
    this.connectQueue = [];
  }

  abort(): void {
    this.m.endUs = Math.min(this.m.endUs, monoUs());
    this.plan.scenario.drainS = 0;
  }

  // ---------------------------------------------------------------------------------------
  // The loop

  /**
   * One turn: housekeeping once a millisecond, every message that is due, then the pacer's
   * next step towards the next one: a timer, a short blocking slice (then the event loop reads
   * sockets), or a spin to the due time and round again to send it.
   */
  private readonly step = (): void => {
    this.timer = null;
    this.immediate = null;
    for (let turn = 0; turn < MAX_SENDS_PER_TURN; turn++) {
      const now = monoUs();
      if (now - this.lastHousekeepingUs >= HOUSEKEEPING_US) this.housekeeping(now);
      if (this.finished) return;
      const sending = now < this.m.endUs;
      if (sending) this.sender.run(now);
      const next = this.pacer.plan(monoUs(), sending ? this.sender.nextDueUs() : Number.NaN);
      switch (next.kind) {
        case 'timer':
          this.timer = setTimeout(this.step, TIMER_MS);
          return;
        case 'slice':
          this.pacer.block(next.waitUs);
          this.immediate = setImmediate(this.step);
          return;
        case 'spin':
          this.pacer.spinUntil(next.untilUs);
          break;
        case 'wait':
          this.pacer.block(next.waitUs);
          break;
        case 'send':
          break;
      }
    }
    this.immediate = setImmediate(this.step);
  };

  private housekeeping(now: number): void {
    this.lastHousekeepingUs = now;
    this.connectDue(now);
    this.pool.checkConnectTimeouts(now);
    if (!this.baseSettled && this.connectQueue.length === 0 && this.pool.connecting.size === 0 && this.m.startUs === Number.POSITIVE_INFINITY) {
      this.baseSettled = true;
      this.post({ type: 'connected', workerIndex: this.plan.workerIndex, ok: this.pool.active.length, failed: this.m.counters.connectFailed });
    }
    if (now >= this.m.startUs && this.loadAtStart === null) this.loadAtStart = this.loadSnapshot();
    this.scenarioDynamics(now);
    if (now >= this.m.endUs && !this.stopping) {
      this.stopping = true;
      this.pool.stopping = true;
      if (this.loadAtStart) this.eluWindow = this.busyShare(this.loadAtStart);
      setTimeout(() => void this.finish(), this.plan.scenario.drainS * 1000);
    }
    if (now - this.lastReportUs >= REPORT_EVERY_US) this.report(now);
  }

  private loadSnapshot(): LoadSnapshot {
    return { elu: performance.eventLoopUtilization(), pacingUs: this.pacer.blockedUs + this.pacer.spunUs };
  }

  /**
   * The share of the time since `from` that the thread's event loop was busy, less the time
   * the pacer blocked or spun on purpose: that is waiting, not work.
   */
  private busyShare(from: LoadSnapshot): number {
    const d = performance.eventLoopUtilization(from.elu);
    const totalMs = d.idle + d.active;
    const pacingMs = (this.pacer.blockedUs + this.pacer.spunUs - from.pacingUs) / 1000;
    return totalMs > 0 ? Math.max(0, d.active - pacingMs) / totalMs : 0;
  }

  private connectDue(now: number): void {
    while (this.connectQueue.length > 0 && this.nextConnectUs <= now) {
      const st = this.connectQueue.shift()!;
      this.pool.open(st, now);
      this.nextConnectUs += 1_000_000 / this.connectRatePerS;
    }
    if (this.connectQueue.length === 0 && this.nextConnectUs < now) this.nextConnectUs = now;
  }

  /** Ramp, spike, churn and reconnect: what changes during the measurement window. */
  private scenarioDynamics(now: number): void {
    const s = this.plan.scenario;
    if (now < this.m.startUs || now >= this.m.endUs) return;
    if (s.kind === 'ramp' && s.ramp && !this.rampStopped && this.extraSlots.length > 0) {
      // The ramp takes over the connect queue at its own rate.
      this.connectRatePerS = s.ramp.rate / this.plan.workerCount;
      this.connectQueue = this.extraSlots;
      this.extraSlots = [];
      this.nextConnectUs = now;
    }
    if (s.kind === 'spike' && s.spike) {
      const at = this.m.startUs + s.spike.atS * 1e6;
      if (!this.spikeStarted && now >= at) {
        this.spikeStarted = true;
        for (const st of this.extraSlots) this.pool.open(st, now);
        this.sender.setMultiplier(s.spike.rateMultiplier);
      }
      if (this.spikeStarted && !this.spikeEnded && now >= at + s.spike.holdS * 1e6) {
        this.spikeEnded = true;
        this.sender.setMultiplier(1);
        for (const st of this.extraSlots) {
          st.retired = true;
          if (st.conn) this.pool.closePlanned(st.conn, now);
        }
      }
    }
    if (s.kind === 'reconnect' && s.reconnect && !this.dropped && now >= this.m.startUs + s.reconnect.atS * 1e6) {
      this.dropped = true;
      // Every k-th active connection, so that the share is spread over the groups.
      const active = [...this.pool.active];
      const every = 1 / s.reconnect.share;
      for (let i = 0, next = 0; i < active.length; i++) {
        if (i < Math.floor(next)) continue;
        next += every;
        this.pool.drop(active[i]!, now, s.reconnect.offlineS);
      }
    }
    if (s.kind === 'churn' && s.churn) {
      const every = 1e6 / (s.churn.rate / this.plan.workerCount);
      if (Number.isNaN(this.nextChurnUs)) this.nextChurnUs = now + every * ((this.plan.workerIndex + 0.5) / this.plan.workerCount);
      while (this.nextChurnUs <= now) {
        this.nextChurnUs += every;
        const oldest = this.pool.oldestActive();
        // The slot reconnects as soon as its old connection has closed (see the pool's onClose).
        if (oldest) this.pool.closePlanned(oldest, now);
      }
    }
  }

  // ---------------------------------------------------------------------------------------
  // Reporting and the end

  private report(now: number): void {
    this.lastReportUs = now;
    const elu = this.busyShare(this.loadAtReport);
    this.loadAtReport = this.loadSnapshot();
    this.m.counters.pacingBlockedUs = Math.round(this.pacer.blockedUs);
    this.m.counters.pacingSpunUs = Math.round(this.pacer.spunUs);
    this.post({
      type: 'tick',
      workerIndex: this.plan.workerIndex,
      tUs: now,
      interval: this.m.takeInterval(),
      counters: structuredClone(this.m.counters),
      active: this.pool.active.length,
      elu,
    });
  }

  private async finish(): Promise<void> {
    const now = monoUs();
    this.sender.recordStillWaiting(now);
    if (this.eluWindow === 0 && this.loadAtStart) this.eluWindow = this.busyShare(this.loadAtStart);
    this.stopping = true;
    await this.pool.closeAll(now);
    this.finished = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.report(monoUs());
    this.post({ type: 'final', workerIndex: this.plan.workerIndex, result: collectWorkerResult(this.m, this.pool, this.eluWindow, this.priority) });
  }
}

/**
 * The load generator that runs inside one loadgen thread (tools/workers/loadgen.ts is its entry).
 * It owns the connection slots `slot % workerCount === workerIndex`, drives them from one
 * timer loop, records HDR histograms and exact delivery logs, and hands everything to the
 * main thread at the end.
 *
 * Time line (µs, monoUs()): connect the scenario's connections at `connect_rate` → tell the
 * runner → the runner broadcasts the measurement window (start = all threads connected +
 * warm-up) → traffic flows from the moment each connection has joined its group, and only
 * messages due inside the window are measured → at the window's end no new message is
 * scheduled; late ones (held by the in-flight window) may still leave during the drain →
 * everything closes.
 */
import { performance } from 'node:perf_hooks';
import type { Histogram } from 'hdr-histogram-js';
import { ErrorCodes } from '../../src/protocol/errors.js';
import { connectWs, type WsClient } from '../wsclient/client.js';
import { monoUs } from './clock.js';
import { ABANDONED, SeqSet } from './delivery.js';
import { encodeHistogram, newHistogram, recordUs } from '../lib/histogram.js';
import { DueQueue, F64Log, RateStream } from './schedule.js';
import { emptyCounters, type Counters, type EncodedHistograms, type WorkerPlan, type WorkerResult, type WorkerToMain } from './types.js';
import {
  MARKER_OVERHEAD,
  PUB_MARK,
  SEND_MARK,
  isFastPathFrame,
  makeData,
  padding,
  parseMarker,
  scanPubMarkers,
  type Marker,
} from './wire.js';

const TICK_MS = 1;
const REPORT_EVERY_US = 1_000_000;
/** A scheduled message that leaves this late (not held by its window) means the generator slipped. */
export const LATE_SEND_US = 10_000;
const CLOSE_WAIT_MS = 3_000;
const TRANSPORT = 'tools/wsclient (raw-socket client)';
const BAD_FRAME: keyof typeof ErrorCodes = 'E_BAD_FRAME';

/** What lives across the reconnections of one slot (one user). */
interface Slot {
  slot: number;
  group: number;
  user: string;
  groupName: string;
  /** The user a `send` from this slot goes to. */
  sendTo: number;
  sendToUser: string;
  pubDue: F64Log;
  pubSent: F64Log;
  pubAck: F64Log;
  sendDue: F64Log;
  sendTo_: F64Log;
  sendAck: F64Log;
  intervals: number[];
  pubSeen: Map<number, SeqSet>;
  sendSeen: Map<number, SeqSet>;
  conn: Conn | null;
  /** Not to be reconnected (spike connections after the spike, everything at the end). */
  retired: boolean;
}

type ConnState = 'connecting' | 'joining' | 'active' | 'closing' | 'closed';

interface Conn {
  slot: Slot;
  ws: WsClient;
  state: ConnState;
  startUs: number;
  /** Index in the generator's active list, -1 when not active. */
  activeIndex: number;
  planned: boolean;
  failure: string;
  pubInFlight: number;
  pubWaiting: DueQueue;
  pingOutstanding: boolean;
  pingSentUs: number;
  pingWaiting: DueQueue;
  pubPrefix: string;
  /** The slot's first pub seq sent on this connection. */
  firstPubSeq: number;
}

export class LoadGenerator {
  private readonly plan: WorkerPlan;
  private readonly post: (m: WorkerToMain) => void;
  private readonly counters: Counters = emptyCounters();
  private readonly h: Record<keyof EncodedHistograms, Histogram>;
  private interval: Histogram = newHistogram();
  private readonly slots: Slot[] = [];
  private readonly bySlot = new Map<number, Slot>();
  private readonly active: Conn[] = [];
  /** Active connections in the order they became active: churn closes the oldest. */
  private readonly activeOrder: Conn[] = [];
  private readonly connecting = new Set<Conn>();
  private readonly pubStream: RateStream;
  private readonly sendStream: RateStream;
  private readonly pingStream: RateStream;
  private readonly pad: string;
  private readonly marker: Marker = { slot: 0, seq: 0, dueUs: 0, sentUs: 0 };
  private sendEnabled: boolean;

  private measureStartUs = Number.POSITIVE_INFINITY;
  private measureEndUs = Number.POSITIVE_INFINITY;
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
  private stopping = false;
  private finished = false;
  private timer: NodeJS.Timeout | null = null;
  private lastReportUs = 0;
  private eluStart: ReturnType<typeof performance.eventLoopUtilization> | null = null;
  private eluWindow = 0;
  private peakActive = 0;
  private readonly onPubDelivery: (m: Marker) => void;
  private currentReceiver: Slot | null = null;
  private currentNowUs = 0;

  constructor(plan: WorkerPlan, post: (m: WorkerToMain) => void) {
    this.plan = plan;
    this.post = post;
    this.h = {
      fanout: newHistogram(),
      fanoutRaw: newHistogram(),
      send: newHistogram(),
      sendRaw: newHistogram(),
      ping: newHistogram(),
      pingRaw: newHistogram(),
      connect: newHistogram(),
      pubAck: newHistogram(),
      scheduleLag: newHistogram(),
    };
    const s = plan.scenario;
    const phase = (plan.workerIndex + 0.5) / plan.workerCount;
    this.pubStream = new RateStream(s.rates.pub, phase);
    this.sendStream = new RateStream(s.rates.send, phase);
    this.pingStream = new RateStream(s.rates.ping, phase);
    this.sendEnabled = plan.sendSupported && s.rates.send > 0;
    this.pad = padding(s.messageBytes - MARKER_OVERHEAD);
    this.connectRatePerS = s.connectRate / plan.workerCount;

    const extra = s.kind === 'ramp' && s.ramp ? Math.max(0, s.ramp.max - s.connections) : s.kind === 'spike' && s.spike ? s.spike.connections : 0;
    for (let slot = plan.workerIndex; slot < s.connections + extra; slot += plan.workerCount) {
      const st = this.makeSlot(slot);
      (slot < s.connections ? this.baseSlots : this.extraSlots).push(st);
    }
    // The hot receive path: one closure, allocated once.
    this.onPubDelivery = (m) => this.pubDelivered(m);
  }

  private makeSlot(slot: number): Slot {
    const s = this.plan.scenario;
    const group = Math.floor(slot / s.groupSize);
    const sendTo = s.connections > 1 ? (slot + s.groupSize) % s.connections : slot;
    const st: Slot = {
      slot,
      group,
      user: this.plan.userPrefix + slot,
      groupName: this.plan.groupPrefix + group,
      sendTo,
      sendToUser: this.plan.userPrefix + sendTo,
      pubDue: new F64Log(),
      pubSent: new F64Log(),
      pubAck: new F64Log(),
      sendDue: new F64Log(16),
      sendTo_: new F64Log(16),
      sendAck: new F64Log(16),
      intervals: [],
      pubSeen: new Map(),
      sendSeen: new Map(),
      conn: null,
      retired: false,
    };
    this.slots.push(st);
    this.bySlot.set(slot, st);
    return st;
  }

  start(): void {
    this.connectQueue = [...this.baseSlots];
    this.nextConnectUs = monoUs();
    this.lastReportUs = monoUs();
    this.schedule();
  }

  setTimeline(measureStartUs: number, measureEndUs: number): void {
    this.measureStartUs = measureStartUs;
    this.measureEndUs = measureEndUs;
  }

  stopRamp(): void {
    this.rampStopped = true;
    this.connectQueue = [];
  }

  abort(): void {
    this.measureEndUs = Math.min(this.measureEndUs, monoUs());
    this.plan.scenario.drainS = 0;
  }

  private schedule(): void {
    this.timer = setTimeout(() => this.tick(), TICK_MS);
  }

  // ---------------------------------------------------------------------------------------
  // The loop

  private tick(): void {
    const now = monoUs();
    this.currentNowUs = now;
    this.connectDue(now);
    this.checkConnectTimeouts(now);
    if (!this.baseSettled && this.connectQueue.length === 0 && this.connecting.size === 0 && this.measureStartUs === Number.POSITIVE_INFINITY) {
      this.baseSettled = true;
      this.post({ type: 'connected', workerIndex: this.plan.workerIndex, ok: this.active.length, failed: this.counters.connectFailed });
    }
    if (now >= this.measureStartUs && this.eluStart === null) this.eluStart = performance.eventLoopUtilization();
    this.scenarioDynamics(now);

    if (now < this.measureEndUs) {
      const n = this.active.length;
      this.pubStream.run(now, n, (due) => this.schedulePub(due, now));
      if (this.sendEnabled) this.sendStream.run(now, n, (due) => this.scheduleSend(due, now));
      this.pingStream.run(now, n, (due) => this.schedulePing(due, now));
    } else if (!this.stopping) {
      this.stopping = true;
      if (this.eluStart) this.eluWindow = performance.eventLoopUtilization(this.eluStart).utilization;
      setTimeout(() => void this.finish(), this.plan.scenario.drainS * 1000);
    }
    if (now - this.lastReportUs >= REPORT_EVERY_US) this.report(now);
    if (!this.finished) this.schedule();
  }

  private connectDue(now: number): void {
    while (this.connectQueue.length > 0 && this.nextConnectUs <= now) {
      const st = this.connectQueue.shift()!;
      this.open(st, now);
      this.nextConnectUs += 1_000_000 / this.connectRatePerS;
    }
    if (this.connectQueue.length === 0 && this.nextConnectUs < now) this.nextConnectUs = now;
  }

  private checkConnectTimeouts(now: number): void {
    if (this.connecting.size === 0) return;
    const limit = this.plan.connectTimeoutMs * 1000;
    for (const c of this.connecting) {
      if (now - c.startUs > limit) {
        c.failure = c.state === 'connecting' ? 'timeout (no welcome)' : 'timeout (no joined)';
        c.ws.destroy();
      }
    }
  }

  /** Ramp, spike and churn: what changes during the measurement window. */
  private scenarioDynamics(now: number): void {
    const s = this.plan.scenario;
    if (now < this.measureStartUs || now >= this.measureEndUs) return;
    if (s.kind === 'ramp' && s.ramp && !this.rampStopped && this.extraSlots.length > 0) {
      // The ramp takes over the connect queue at its own rate.
      this.connectRatePerS = s.ramp.rate / this.plan.workerCount;
      this.connectQueue = this.extraSlots;
      this.extraSlots = [];
      this.nextConnectUs = now;
    }
    if (s.kind === 'spike' && s.spike) {
      const at = this.measureStartUs + s.spike.atS * 1e6;
      if (!this.spikeStarted && now >= at) {
        this.spikeStarted = true;
        for (const st of this.extraSlots) this.open(st, now);
        this.setMultiplier(s.spike.rateMultiplier);
      }
      if (this.spikeStarted && !this.spikeEnded && now >= at + s.spike.holdS * 1e6) {
        this.spikeEnded = true;
        this.setMultiplier(1);
        for (const st of this.extraSlots) {
          st.retired = true;
          if (st.conn) this.closePlanned(st.conn, now);
        }
      }
    }
    if (s.kind === 'churn' && s.churn) {
      const every = 1e6 / (s.churn.rate / this.plan.workerCount);
      if (Number.isNaN(this.nextChurnUs)) this.nextChurnUs = now + every * ((this.plan.workerIndex + 0.5) / this.plan.workerCount);
      while (this.nextChurnUs <= now) {
        this.nextChurnUs += every;
        const oldest = this.activeOrder.find((c) => c.state === 'active');
        // The slot reconnects as soon as its old connection has closed (see onClose).
        if (oldest) this.closePlanned(oldest, now);
      }
    }
  }

  private setMultiplier(m: number): void {
    this.pubStream.setMultiplier(m);
    this.sendStream.setMultiplier(m);
    this.pingStream.setMultiplier(m);
  }

  // ---------------------------------------------------------------------------------------
  // Sending

  private inWindow(dueUs: number): boolean {
    return dueUs >= this.measureStartUs && dueUs < this.measureEndUs;
  }

  /** The round-robin cursors: each stream takes the next active connection in turn. */
  private rr = { pub: 0, send: 0, ping: 0 };
  private nextActive(kind: 'pub' | 'send' | 'ping'): Conn | undefined {
    const n = this.active.length;
    if (n === 0) return undefined;
    const i = this.rr[kind]++ % n;
    return this.active[i];
  }

  private noteLag(dueUs: number, now: number): void {
    if (!this.inWindow(dueUs)) return;
    const lag = now - dueUs;
    recordUs(this.h.scheduleLag, lag);
    if (lag > LATE_SEND_US) this.counters.lateSends++;
  }

  private schedulePub(dueUs: number, now: number): void {
    const c = this.nextActive('pub');
    if (!c) return;
    this.noteLag(dueUs, now);
    if (this.inWindow(dueUs)) {
      this.counters.window.pubsSent++;
      this.counters.window.ops++;
    }
    if (c.pubInFlight >= this.plan.scenario.inFlight) {
      c.pubWaiting.push(dueUs);
      this.counters.pubsDeferred++;
      return;
    }
    this.sendPub(c, dueUs, monoUs());
  }

  private sendPub(c: Conn, dueUs: number, sentUs: number): void {
    const st = c.slot;
    const seq = st.pubDue.push(dueUs);
    st.pubSent.push(sentUs);
    st.pubAck.push(Number.NaN);
    const frame = c.pubPrefix + seq + '","data":"' + makeData(PUB_MARK, st.slot, seq, dueUs, sentUs, this.pad) + '"}';
    c.pubInFlight++;
    this.counters.pubsSent++;
    this.write(c, frame);
  }

  private scheduleSend(dueUs: number, now: number): void {
    const c = this.nextActive('send');
    if (!c) return;
    this.noteLag(dueUs, now);
    if (this.inWindow(dueUs)) {
      this.counters.window.sendsSent++;
      this.counters.window.ops++;
    }
    const st = c.slot;
    const sentUs = monoUs();
    const seq = st.sendDue.push(dueUs);
    st.sendTo_.push(st.sendTo);
    st.sendAck.push(Number.NaN);
    const frame =
      '{"op":"send","to":' + JSON.stringify(st.sendToUser) + ',"pri":' + this.plan.scenario.pri + ',"ref":"s' + seq + '","data":"' +
      makeData(SEND_MARK, st.slot, seq, dueUs, sentUs, this.pad) + '"}';
    this.counters.sendsSent++;
    this.write(c, frame);
  }

  private schedulePing(dueUs: number, now: number): void {
    const c = this.nextActive('ping');
    if (!c) return;
    if (this.inWindow(dueUs)) {
      this.counters.window.pingsSent++;
      this.counters.window.ops++;
    }
    // One ping in flight per connection, like a heartbeat: a ping due while the last is
    // unanswered waits, and its wait counts.
    if (c.pingOutstanding) {
      c.pingWaiting.push(dueUs);
      return;
    }
    this.noteLag(dueUs, now);
    this.sendPing(c, dueUs);
  }

  private sendPing(c: Conn, dueUs: number): void {
    c.pingOutstanding = true;
    c.pingSentUs = monoUs();
    this.counters.pingsSent++;
    this.write(c, '{"op":"ping","t":' + Math.round(dueUs) + '}');
  }

  private write(c: Conn, frame: string): void {
    this.counters.bytesOut += frame.length;
    c.ws.send(frame);
    const buffered = c.ws.bufferedAmount;
    if (buffered > this.counters.maxBufferedAmount) this.counters.maxBufferedAmount = buffered;
  }

  // ---------------------------------------------------------------------------------------
  // Connections

  private open(st: Slot, now: number): void {
    if (st.conn || st.retired || this.stopping) return;
    this.counters.connectAttempts++;
    const s = this.plan.scenario;
    const c = {
      slot: st,
      state: 'connecting',
      startUs: now,
      activeIndex: -1,
      planned: false,
      failure: '',
      pubInFlight: 0,
      pubWaiting: new DueQueue(),
      pingOutstanding: false,
      pingSentUs: 0,
      pingWaiting: new DueQueue(),
      firstPubSeq: st.pubDue.length,
      pubPrefix: '{"op":"pub","group":' + JSON.stringify(st.groupName) + ',"pri":' + s.pri + ',"ref":"p',
    } as Conn;
    st.conn = c;
    this.connecting.add(c);
    c.ws = connectWs({
      host: this.plan.host,
      port: this.plan.port,
      path: this.plan.path + '?user=' + encodeURIComponent(st.user),
      handshakeTimeoutMs: this.plan.connectTimeoutMs,
      onMessage: (payload) => this.onMessage(c, payload),
      onError: (err) => {
        if (!c.failure) {
          const status = (err as { httpStatus?: number }).httpStatus;
          const code = (err as NodeJS.ErrnoException).code;
          c.failure = status ? `http ${status}` : code ?? err.message;
        }
      },
      onClose: (code) => this.onClose(c, code),
    });
  }

  private activate(c: Conn, now: number): void {
    this.connecting.delete(c);
    c.state = 'active';
    c.slot.intervals.push(now, Number.NaN);
    c.activeIndex = this.active.length;
    this.active.push(c);
    this.activeOrder.push(c);
    if (this.active.length > this.peakActive) this.peakActive = this.active.length;
  }

  private deactivate(c: Conn, now: number): void {
    if (c.activeIndex < 0) return;
    const iv = c.slot.intervals;
    iv[iv.length - 1] = now;
    const last = this.active.pop()!;
    if (last !== c) {
      this.active[c.activeIndex] = last;
      last.activeIndex = c.activeIndex;
    }
    c.activeIndex = -1;
    const k = this.activeOrder.indexOf(c);
    if (k >= 0) this.activeOrder.splice(k, 1);
  }

  private closePlanned(c: Conn, now: number, final = false): void {
    if (c.state === 'closing' || c.state === 'closed') return;
    c.planned = true;
    if (!final) {
      // A pub still in flight when we close on purpose can never be acknowledged: mark it so
      // that it counts neither as owed nor as an error. (At the final close, after the drain,
      // an unacknowledged pub stays one.)
      const acks = c.slot.pubAck;
      for (let seq = c.firstPubSeq; seq < acks.length; seq++) if (Number.isNaN(acks.get(seq))) acks.set(seq, ABANDONED);
    }
    this.deactivate(c, now);
    c.state = 'closing';
    c.ws.close(1000, 'loadtest');
  }

  private onClose(c: Conn, code: number): void {
    const now = monoUs();
    const st = c.slot;
    const wasConnecting = this.connecting.delete(c);
    if (!c.planned) {
      if (wasConnecting) {
        this.counters.connectFailed++;
        const reason = c.failure || `closed before ${c.state === 'connecting' ? 'welcome' : 'joined'} (${code})`;
        this.counters.connectFailures[reason] = (this.counters.connectFailures[reason] ?? 0) + 1;
      } else {
        this.counters.unexpectedCloses++;
        this.counters.closeCodes[String(code)] = (this.counters.closeCodes[String(code)] ?? 0) + 1;
      }
      if (this.inWindow(now)) this.counters.window.errors++;
    }
    this.deactivate(c, now);
    c.state = 'closed';
    if (st.conn === c) st.conn = null;
    // Churn: the slot's user comes back at once with a new connection.
    if (c.planned && this.plan.scenario.kind === 'churn' && !st.retired && now < this.measureEndUs && !this.stopping) this.open(st, now);
    if (this.closeWaiter && this.connecting.size === 0 && this.slots.every((s) => !s.conn)) this.closeWaiter();
  }

  // ---------------------------------------------------------------------------------------
  // Receiving

  private onMessage(c: Conn, payload: Buffer): void {
    const now = monoUs();
    this.currentNowUs = now;
    this.counters.bytesIn += payload.length;
    // The payload is a view into a shared read buffer, valid until this returns.
    if (isFastPathFrame(payload)) {
      this.currentReceiver = c.slot;
      scanPubMarkers(payload, this.marker, this.onPubDelivery);
      return;
    }
    let frame: Record<string, unknown>;
    try {
      frame = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
    } catch {
      this.countErr('unparseable frame');
      return;
    }
    this.handleFrame(c, frame, now);
  }

  private pubDelivered(m: Marker): void {
    const st = this.currentReceiver!;
    let seen = st.pubSeen.get(m.slot);
    if (!seen) st.pubSeen.set(m.slot, (seen = new SeqSet()));
    this.counters.deliveries++;
    if (!seen.add(m.seq)) this.counters.duplicateDeliveries++;
    const now = this.currentNowUs;
    recordUs(this.interval, now - m.dueUs);
    if (this.inWindow(m.dueUs)) {
      this.counters.window.deliveries++;
      recordUs(this.h.fanout, now - m.dueUs);
      recordUs(this.h.fanoutRaw, now - m.sentUs);
    }
  }

  private handleFrame(c: Conn, f: Record<string, unknown>, now: number): void {
    switch (f.op) {
      case 'msg':
        this.handleMsg(c, f, now);
        return;
      case 'batch':
        if (Array.isArray(f.msgs)) for (const m of f.msgs) if (m && typeof m === 'object') this.handleMsg(c, m as Record<string, unknown>, now);
        return;
      case 'ack':
        this.handleAck(c, typeof f.ref === 'string' ? f.ref : '', now);
        return;
      case 'pong':
        this.handlePong(c, typeof f.t === 'number' ? f.t : Number.NaN, now);
        return;
      case 'welcome':
        if (c.state === 'connecting') {
          c.state = 'joining';
          recordUs(this.h.connect, now - c.startUs);
          this.counters.connectOk++;
          c.ws.send('{"op":"join","group":' + JSON.stringify(c.slot.groupName) + ',"ref":"j"}');
        }
        return;
      case 'joined':
        if (c.state === 'joining') this.activate(c, now);
        return;
      case 'err':
        this.handleErr(c, f, now);
        return;
      default:
        return;
    }
  }

  private handleMsg(c: Conn, m: Record<string, unknown>, now: number): void {
    if (parseMarker(m.data, PUB_MARK, this.marker)) {
      this.currentReceiver = c.slot;
      this.pubDelivered(this.marker);
    } else if (parseMarker(m.data, SEND_MARK, this.marker)) {
      const mk = this.marker;
      let seen = c.slot.sendSeen.get(mk.slot);
      if (!seen) c.slot.sendSeen.set(mk.slot, (seen = new SeqSet(16)));
      this.counters.sendDeliveries++;
      if (!seen.add(mk.seq)) this.counters.duplicateDeliveries++;
      if (this.inWindow(mk.dueUs)) {
        this.counters.window.sendDeliveries++;
        recordUs(this.h.send, now - mk.dueUs);
        recordUs(this.h.sendRaw, now - mk.sentUs);
      }
    }
    if (m.ackReq === true && (typeof m.id === 'string' || typeof m.id === 'number') && c.state !== 'closed') {
      c.ws.send('{"op":"ack","id":' + JSON.stringify(m.id) + '}');
    }
  }

  private handleAck(c: Conn, ref: string, now: number): void {
    const st = c.slot;
    const seq = Number(ref.slice(1));
    if (ref.charCodeAt(0) === 112 /* p */) {
      const due = st.pubDue.get(seq);
      if (Number.isNaN(due)) return;
      st.pubAck.set(seq, now);
      this.counters.pubsAcked++;
      if (this.inWindow(due)) recordUs(this.h.pubAck, now - due);
      this.pubSettled(c);
    } else if (ref.charCodeAt(0) === 115 /* s */) {
      if (seq < st.sendAck.length) {
        st.sendAck.set(seq, now);
        this.counters.sendsAcked++;
      }
    }
  }

  /** A pub left the in-flight window: the oldest waiting one (if any) goes now, with its due time. */
  private pubSettled(c: Conn): void {
    c.pubInFlight--;
    if (c.state !== 'active') return;
    const due = c.pubWaiting.shift();
    if (due !== undefined) this.sendPub(c, due, monoUs());
  }

  private handlePong(c: Conn, t: number, now: number): void {
    this.counters.pongs++;
    c.pingOutstanding = false;
    if (this.inWindow(t)) {
      recordUs(this.h.ping, now - t);
      recordUs(this.h.pingRaw, now - c.pingSentUs);
    }
    const next = c.pingWaiting.shift();
    if (next !== undefined && c.state === 'active') this.sendPing(c, next);
  }

  private handleErr(c: Conn, f: Record<string, unknown>, now: number): void {
    const code = typeof f.code === 'string' ? f.code : 'unknown';
    const ref = typeof f.ref === 'string' ? f.ref : '';
    const message = typeof f.message === 'string' ? f.message : '';
    const aboutSend = ref.startsWith('s') || (ref === '' && /\bsend\b|unknown op/i.test(message) && this.counters.sendsSent > 0);
    if (code === BAD_FRAME && aboutSend) {
      // The server does not implement `send` (yet): stop sending it, so repeated bad frames
      // do not get the connection closed, and report it apart from real errors.
      this.counters.sendsUnsupported++;
      this.sendEnabled = false;
      return;
    }
    this.countErr(code);
    if (this.inWindow(now)) this.counters.window.errors++;
    if (ref.startsWith('p')) {
      this.counters.pubsRejected++;
      this.pubSettled(c);
    } else if (ref.startsWith('s')) {
      this.counters.sendsRejected++;
    }
  }

  private countErr(code: string): void {
    this.counters.errFrames[code] = (this.counters.errFrames[code] ?? 0) + 1;
  }

  // ---------------------------------------------------------------------------------------
  // Reporting and the end

  private report(now: number): void {
    this.lastReportUs = now;
    const interval = encodeHistogram(this.interval);
    this.interval.reset();
    this.post({
      type: 'tick',
      workerIndex: this.plan.workerIndex,
      tUs: now,
      interval,
      counters: structuredClone(this.counters),
      active: this.active.length,
      elu: performance.eventLoopUtilization().utilization,
    });
  }

  private closeWaiter: (() => void) | null = null;

  private async finish(): Promise<void> {
    const now = monoUs();
    // Messages still waiting for their window when the test ends never left: they are at
    // least this late. Counting them keeps a stalled server from hiding its worst samples.
    for (const c of this.active) {
      for (const due of c.pubWaiting.drain()) if (this.inWindow(due)) recordUs(this.h.fanout, now - due);
      for (const due of c.pingWaiting.drain()) if (this.inWindow(due)) recordUs(this.h.ping, now - due);
    }
    if (this.eluWindow === 0 && this.eluStart) this.eluWindow = performance.eventLoopUtilization(this.eluStart).utilization;
    this.stopping = true;
    const closed = new Promise<void>((resolve) => {
      this.closeWaiter = resolve;
    });
    for (const st of this.slots) {
      st.retired = true;
      if (st.conn) {
        if (st.conn.state === 'active') this.closePlanned(st.conn, now, true);
        else {
          st.conn.planned = true;
          st.conn.ws.destroy();
        }
      }
    }
    if (this.slots.some((s) => s.conn)) {
      const timeout = setTimeout(() => {
        for (const st of this.slots) st.conn?.ws.destroy();
      }, CLOSE_WAIT_MS);
      await closed;
      clearTimeout(timeout);
    }
    this.finished = true;
    if (this.timer) clearTimeout(this.timer);
    this.report(monoUs());
    this.post({ type: 'final', workerIndex: this.plan.workerIndex, result: this.result() });
  }

  private result(): WorkerResult {
    const histograms = Object.fromEntries(Object.entries(this.h).map(([k, v]) => [k, encodeHistogram(v)])) as unknown as EncodedHistograms;
    return {
      histograms,
      counters: this.counters,
      elu: this.eluWindow,
      peakActive: this.peakActive,
      transport: TRANSPORT,
      delivery: {
        pubs: this.slots
          .filter((st) => st.pubDue.length > 0)
          .map((st) => ({ slot: st.slot, group: st.group, dueUs: st.pubDue.toArray(), sentUs: st.pubSent.toArray(), ackUs: st.pubAck.toArray() })),
        receivers: this.slots
          .filter((st) => st.intervals.length > 0)
          .map((st) => ({
            slot: st.slot,
            group: st.group,
            intervals: st.intervals,
            connectedAtEnd: !this.wasDropped(st),
            pubSeen: [...st.pubSeen].map(([from, set]) => ({ from, bits: set.bits })),
            sendSeen: [...st.sendSeen].map(([from, set]) => ({ from, bits: set.bits })),
          })),
        sends: this.slots
          .filter((st) => st.sendDue.length > 0)
          .map((st) => ({ slot: st.slot, to: Int32Array.from(st.sendTo_.toArray()), dueUs: st.sendDue.toArray(), ackUs: st.sendAck.toArray() })),
      },
    };
  }

  /** A slot whose last connection ended before the final close (dropped, or a retired spike slot). */
  private wasDropped(st: Slot): boolean {
    const end = st.intervals[st.intervals.length - 1]!;
    return !(end >= this.measureEndUs);
  }
}

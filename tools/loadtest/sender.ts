/**
 * The sending side of one loadgen thread: one open-loop schedule per message kind
 * (schedule.ts), each taking the thread's active connections in turn, and what makes a
 * message wait while keeping its due time (a full in-flight window, an unanswered ping).
 * Every pub and send carries its due and sent times (wire.ts) and is logged in its slot for
 * the exact delivery accounting.
 */
import { monoUs } from './clock.js';
import type { ConnectionPool } from './connection-pool.js';
import type { Measurements } from './measurements.js';
import { recordUs } from '../lib/histogram.js';
import { RateStream } from './schedule.js';
import type { Conn } from './slots.js';
import type { WorkerPlan } from './types.js';
import { MARKER_OVERHEAD, PUB_MARK, SEND_MARK, makeData, padding } from './wire.js';

type Kind = 'pub' | 'send' | 'ping';
/** The window counter of each kind. */
const WINDOW_COUNT = { pub: 'pubsSent', send: 'sendsSent', ping: 'pingsSent' } as const;

export class Sender {
  private readonly pubStream: RateStream;
  private readonly sendStream: RateStream;
  private readonly pingStream: RateStream;
  private readonly pad: string;
  private sendEnabled: boolean;
  /** The round-robin cursors: each stream takes the next active connection in turn. */
  private readonly rr: Record<Kind, number> = { pub: 0, send: 0, ping: 0 };
  private actedAtUs = 0;
  private readonly firePub = (dueUs: number): void => this.schedulePub(dueUs);
  private readonly fireSend = (dueUs: number): void => this.scheduleSend(dueUs);
  private readonly firePing = (dueUs: number): void => this.schedulePing(dueUs);

  constructor(
    private readonly plan: WorkerPlan,
    private readonly m: Measurements,
    private readonly pool: ConnectionPool,
  ) {
    const s = plan.scenario;
    // Each kind of each thread on its own phase of the schedule's grid (schedule.ts): threads
    // a share of an interval apart, and within a thread the three kinds a third of that apart.
    const phase = (kind: number): number => (plan.workerIndex + (kind + 0.5) / 3) / plan.workerCount;
    this.pubStream = new RateStream(s.rates.pub, phase(0));
    this.sendStream = new RateStream(s.rates.send, phase(1));
    this.pingStream = new RateStream(s.rates.ping, phase(2));
    this.sendEnabled = plan.sendSupported && s.rates.send > 0;
    this.pad = padding(s.messageBytes - MARKER_OVERHEAD);
  }

  /** Sends (or queues) every message due at or before `now`. */
  run(now: number): void {
    const n = this.pool.active.length;
    this.pubStream.run(now, n, this.firePub);
    if (this.sendEnabled) this.sendStream.run(now, n, this.fireSend);
    this.pingStream.run(now, n, this.firePing);
  }

  /** When the next message of any kind is due (NaN: none is scheduled): what the pacer waits for. */
  nextDueUs(): number {
    const n = this.pool.active.length;
    const pub = this.pubStream.peekDueUs(n);
    const send = this.sendEnabled ? this.sendStream.peekDueUs(n) : Number.NaN;
    return earliest(earliest(pub, send), this.pingStream.peekDueUs(n));
  }

  setMultiplier(m: number): void {
    this.pubStream.setMultiplier(m);
    this.sendStream.setMultiplier(m);
    this.pingStream.setMultiplier(m);
  }

  /** The server does not implement `send`: stop sending it (repeated bad frames would get the connection closed). */
  disableSend(): void {
    this.sendEnabled = false;
  }

  /**
   * The next active connection in turn for a message of `kind` due at `dueUs` (undefined when
   * none is active), with the message counted: in the window's schedule whether it leaves or
   * waits, and its schedule lag at this moment, when the generator acts on it (`actedAtUs`).
   */
  private take(kind: Kind, dueUs: number): Conn | undefined {
    const active = this.pool.active;
    if (active.length === 0) return undefined;
    const c = active[this.rr[kind]++ % active.length]!;
    this.actedAtUs = monoUs();
    this.m.noteLag(dueUs, this.actedAtUs);
    if (this.m.inWindow(dueUs)) {
      this.m.counters.window[WINDOW_COUNT[kind]]++;
      this.m.counters.window.ops++;
    }
    return c;
  }

  private schedulePub(dueUs: number): void {
    const c = this.take('pub', dueUs);
    if (!c) return;
    if (c.pubInFlight >= this.plan.scenario.inFlight) {
      c.pubWaiting.push(dueUs);
      this.m.counters.pubsDeferred++;
      return;
    }
    this.sendPub(c, dueUs, this.actedAtUs);
  }

  private sendPub(c: Conn, dueUs: number, sentUs: number): void {
    const st = c.slot;
    const seq = st.pubDue.push(dueUs);
    st.pubSent.push(sentUs);
    st.pubAck.push(Number.NaN);
    const frame = c.pubPrefix + seq + '","data":"' + makeData(PUB_MARK, st.slot, seq, dueUs, sentUs, this.pad) + '"}';
    c.pubInFlight++;
    this.m.counters.pubsSent++;
    this.write(c, frame);
  }

  private scheduleSend(dueUs: number): void {
    const c = this.take('send', dueUs);
    if (!c) return;
    const sentUs = this.actedAtUs;
    const st = c.slot;
    const seq = st.sendDue.push(dueUs);
    st.sendTo_.push(st.sendTo);
    st.sendAck.push(Number.NaN);
    const frame =
      '{"op":"send","to":' + JSON.stringify(st.sendToUser) + ',"pri":' + this.plan.scenario.pri + ',"ref":"s' + seq + '","data":"' +
      makeData(SEND_MARK, st.slot, seq, dueUs, sentUs, this.pad) + '"}';
    this.m.counters.sendsSent++;
    this.write(c, frame);
  }

  private schedulePing(dueUs: number): void {
    const c = this.take('ping', dueUs);
    if (!c) return;
    // One ping in flight per connection, like a heartbeat: a ping due while the last is
    // unanswered waits, and its wait counts.
    if (c.pingOutstanding) {
      c.pingWaiting.push(dueUs);
      return;
    }
    this.sendPing(c, dueUs);
  }

  private sendPing(c: Conn, dueUs: number): void {
    c.pingOutstanding = true;
    c.pingSentUs = monoUs();
    this.m.counters.pingsSent++;
    this.write(c, '{"op":"ping","t":' + Math.round(dueUs) + '}');
  }

  private write(c: Conn, frame: string): void {
    const counters = this.m.counters;
    counters.bytesOut += frame.length;
    c.ws.send(frame);
    const buffered = c.ws.bufferedAmount;
    if (buffered > counters.maxBufferedAmount) counters.maxBufferedAmount = buffered;
  }

  /** A pub left the in-flight window: the oldest waiting one (if any) goes now, with its due time. */
  pubSettled(c: Conn): void {
    c.pubInFlight--;
    if (c.state !== 'active') return;
    const due = c.pubWaiting.shift();
    if (due !== undefined) this.sendPub(c, due, monoUs());
  }

  /** The ping was answered: the next one waiting (if any) goes now, with its due time. */
  pingAnswered(c: Conn): void {
    c.pingOutstanding = false;
    const next = c.pingWaiting.shift();
    if (next !== undefined && c.state === 'active') this.sendPing(c, next);
  }

  /**
   * Messages still waiting for their window when the test ends never left: they are at least
   * this late. Counting them keeps a stalled server from hiding its worst samples.
   */
  recordStillWaiting(now: number): void {
    for (const c of this.pool.active) {
      for (const due of c.pubWaiting.drain()) if (this.m.inWindow(due)) recordUs(this.m.h.fanout, now - due);
      for (const due of c.pingWaiting.drain()) if (this.m.inWindow(due)) recordUs(this.m.h.ping, now - due);
    }
  }
}

/** The earlier of two due times; NaN means none. */
function earliest(a: number, b: number): number {
  return Number.isNaN(a) ? b : Number.isNaN(b) ? a : Math.min(a, b);
}

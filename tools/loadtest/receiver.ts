/**
 * The receiving side of one loadgen thread: every frame the server sends to one of its
 * connections. Pub deliveries take a fast path (their markers are found without JSON.parse,
 * wire.ts); everything else is parsed and answered: `welcome` → join, `joined` → the
 * connection is active, `ack` and `pong` → latencies and the next waiting message, `msg`
 * with `ackReq` → ack, `err` → counted by code. In the reconnect scenario every frame is
 * parsed: each `msg`'s offset goes through the order check (order-check.ts), a user coming
 * back joins with `since`, and the replay before its `joined` is counted apart from latency.
 */
import { ErrorCodes, type ErrorReason } from '../../src/protocol/errors.js';
import { monoUs } from './clock.js';
import type { ConnectionPool } from './connection-pool.js';
import { recordReceipt } from './duplicates.js';
import { recordUs } from '../lib/histogram.js';
import type { Measurements } from './measurements.js';
import type { Sender } from './sender.js';
import type { Conn } from './slots.js';
import { checkJoined, checkMsg, sinceOf } from './order-check.js';
import { PUB_MARK, SEND_MARK, isFastPathFrame, parseMarker, scanPubMarkers, type Marker } from './wire.js';

const BAD_FRAME: keyof typeof ErrorCodes = 'E_BAD_FRAME';
const UNKNOWN_OP: ErrorReason = 'unknown_op';
/** First sizes of the per-sender receipt bitsets: a publisher sends many pubs, few sends. */
const PUB_SEQ_BITS = 256;
const SEND_SEQ_BITS = 16;

export class Receiver {
  private readonly marker: Marker = { slot: 0, seq: 0, dueUs: 0, sentUs: 0 };
  /** The hot receive path: one closure, allocated once, told the receiver and time by fields. */
  private readonly onPubDelivery: (m: Marker) => void;
  private currentReceiver: Conn | null = null;
  private currentNowUs = 0;

  /**
   * @param checkOrder the reconnect scenario: every frame parsed, offsets checked, rejoins with `since`
   */
  constructor(
    private readonly m: Measurements,
    private readonly pool: ConnectionPool,
    private readonly sender: Sender,
    private readonly checkOrder = false,
  ) {
    this.onPubDelivery = (mk) => this.pubDelivered(mk);
  }

  onMessage(c: Conn, payload: Buffer): void {
    const now = monoUs();
    this.currentNowUs = now;
    this.m.counters.bytesIn += payload.length;
    // The payload is a view into a shared read buffer, valid until this returns.
    if (!this.checkOrder && isFastPathFrame(payload)) {
      this.currentReceiver = c;
      scanPubMarkers(payload, this.marker, this.onPubDelivery);
      return;
    }
    let frame: Record<string, unknown>;
    try {
      frame = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
    } catch {
      this.m.countErr('unparseable frame');
      return;
    }
    this.handleFrame(c, frame, now);
  }

  /**
   * A pub delivery to `currentReceiver`; `ackReq` would make a repeat a redelivery (pubs never
   * have it). `replayed`: recovered after a reconnect, it waited while its user was away: no latency.
   */
  private pubDelivered(mk: Marker, ackReq = false, replayed = false): void {
    const c = this.currentReceiver!;
    const counters = this.m.counters;
    counters.deliveries++;
    const duplicate = recordReceipt(c.slot.pubSeen, c.pubSeen, mk.slot, mk.seq, ackReq, PUB_SEQ_BITS);
    if (duplicate) counters.duplicates[duplicate]++;
    if (replayed) return;
    const now = this.currentNowUs;
    recordUs(this.m.interval, now - mk.dueUs);
    if (this.m.inWindow(mk.dueUs)) {
      counters.window.deliveries++;
      recordUs(this.m.h.fanout, now - mk.dueUs);
      recordUs(this.m.h.fanoutRaw, now - mk.sentUs);
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
          recordUs(this.m.h.connect, now - c.startUs);
          this.m.counters.connectOk++;
          const since = this.checkOrder ? sinceOf(c.slot.order) : undefined;
          if (since !== undefined) {
            c.recovering = true;
            this.m.counters.recovery.rejoins++;
          }
          c.ws.send(JSON.stringify({ op: 'join', group: c.slot.groupName, ref: 'j', ...(since && { since }) }));
        }
        return;
      case 'joined':
        if (c.state !== 'joining') return;
        if (this.checkOrder) checkJoined(c.slot.order, f, c.recovering, this.m.counters.recovery);
        this.pool.activate(c, now);
        return;
      case 'err':
        this.handleErr(c, f, now);
        return;
      default:
        return;
    }
  }

  private handleMsg(c: Conn, m: Record<string, unknown>, now: number): void {
    const ackReq = m.ackReq === true;
    if (parseMarker(m.data, PUB_MARK, this.marker)) {
      this.currentReceiver = c;
      // Before `joined`, only a recovering join's replay reaches a connection.
      const replayed = this.checkOrder && c.state === 'joining';
      if (replayed) this.m.counters.recovery.replayed++;
      if (this.checkOrder && m.group === c.slot.groupName) checkMsg(c.slot.order, m.offset, m.epoch, this.m.counters.recovery);
      this.pubDelivered(this.marker, ackReq, replayed);
    } else if (parseMarker(m.data, SEND_MARK, this.marker)) {
      const mk = this.marker;
      const counters = this.m.counters;
      counters.sendDeliveries++;
      const duplicate = recordReceipt(c.slot.sendSeen, c.sendSeen, mk.slot, mk.seq, ackReq, SEND_SEQ_BITS);
      if (duplicate) counters.duplicates[duplicate]++;
      if (this.m.inWindow(mk.dueUs)) {
        counters.window.sendDeliveries++;
        recordUs(this.m.h.send, now - mk.dueUs);
        recordUs(this.m.h.sendRaw, now - mk.sentUs);
      }
    }
    if (ackReq && (typeof m.id === 'string' || typeof m.id === 'number') && c.state !== 'closed') {
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
      this.m.counters.pubsAcked++;
      if (this.m.inWindow(due)) recordUs(this.m.h.pubAck, now - due);
      this.sender.pubSettled(c);
    } else if (ref.charCodeAt(0) === 115 /* s */) {
      if (seq < st.sendAck.length) {
        st.sendAck.set(seq, now);
        this.m.counters.sendsAcked++;
      }
    }
  }

  private handlePong(c: Conn, t: number, now: number): void {
    this.m.counters.pongs++;
    if (this.m.inWindow(t)) {
      recordUs(this.m.h.ping, now - t);
      recordUs(this.m.h.pingRaw, now - c.pingSentUs);
    }
    this.sender.pingAnswered(c);
  }

  private handleErr(c: Conn, f: Record<string, unknown>, now: number): void {
    const code = typeof f.code === 'string' ? f.code : 'unknown';
    const ref = typeof f.ref === 'string' ? f.ref : '';
    const counters = this.m.counters;
    const unknownOp = f.reason === UNKNOWN_OP;
    const aboutSend = ref.startsWith('s') || (ref === '' && unknownOp && counters.sendsSent > 0);
    if (code === BAD_FRAME && aboutSend) {
      // The server does not implement `send` (yet): stop sending it, so repeated bad frames
      // do not get the connection closed, and report it apart from real errors.
      counters.sendsUnsupported++;
      this.sender.disableSend();
      return;
    }
    this.m.countErr(code);
    if (this.m.inWindow(now)) counters.window.errors++;
    if (ref.startsWith('p')) {
      counters.pubsRejected++;
      this.sender.pubSettled(c);
    } else if (ref.startsWith('s')) {
      counters.sendsRejected++;
    }
  }
}

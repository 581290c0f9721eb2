/**
 * The connections of one loadgen thread: opening one for a slot, the slot's membership
 * intervals (joined → left), the list of active connections the send schedule takes turns
 * over, closing on purpose (churn, end of a spike, the end), dropping (the reconnect
 * scenario: TCP cut, back after offline_s) and counting every close we did not ask for.
 */
import { connectWs } from '../wsclient/client.js';
import { monoUs } from './clock.js';
import { ABANDONED } from './delivery.js';
import type { Measurements } from './measurements.js';
import { makeSlot, newConn, type Conn, type Slot } from './slots.js';
import type { WorkerPlan } from './types.js';

/** How long the final close waits for the server's close handshakes before dropping TCP. */
const CLOSE_WAIT_MS = 3_000;

export class ConnectionPool {
  readonly slots: Slot[] = [];
  /** Active connections (joined their group), in no order: the send schedule's round robin. */
  readonly active: Conn[] = [];
  /** Active connections in the order they became active: churn closes the oldest. */
  private readonly activeOrder: Conn[] = [];
  readonly connecting = new Set<Conn>();
  peakActive = 0;
  /** Set when the run ends: nothing opens or reopens any more. */
  stopping = false;
  private closeWaiter: (() => void) | null = null;

  constructor(
    private readonly plan: WorkerPlan,
    private readonly m: Measurements,
    private readonly onMessage: (c: Conn, payload: Buffer) => void,
  ) {}

  addSlot(slot: number): Slot {
    const st = makeSlot(this.plan, slot);
    this.slots.push(st);
    return st;
  }

  open(st: Slot, now: number): void {
    if (st.conn || st.retired || this.stopping) return;
    this.m.counters.connectAttempts++;
    const c = newConn(this.plan, st, now);
    st.conn = c;
    this.connecting.add(c);
    // --host A,B: each slot keeps its node, so its user reconnects where it was.
    const spread = this.plan.spread;
    const target = spread.length > 0 ? spread[st.slot % spread.length]! : this.plan;
    c.ws = connectWs({
      host: target.host,
      port: target.port,
      path: this.plan.path + '?user=' + encodeURIComponent(st.user),
      handshakeTimeoutMs: this.plan.connectTimeoutMs,
      ...(this.plan.tls && { tls: {} }),
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

  checkConnectTimeouts(now: number): void {
    if (this.connecting.size === 0) return;
    const limit = this.plan.connectTimeoutMs * 1000;
    for (const c of this.connecting) {
      if (now - c.startUs > limit) {
        c.failure = c.state === 'connecting' ? 'timeout (no welcome)' : 'timeout (no joined)';
        c.ws.destroy();
      }
    }
  }

  /** The connection got `joined`: it is a member from now on and takes its turns sending. */
  activate(c: Conn, now: number): void {
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

  /** The connection that has been active longest (churn closes it next). */
  oldestActive(): Conn | undefined {
    return this.activeOrder.find((c) => c.state === 'active');
  }

  /** `cut`: drop TCP without the close handshake (as a network loss would). */
  closePlanned(c: Conn, now: number, final = false, cut = false): void {
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
    if (cut) c.ws.destroy();
    else c.ws.close(1000, 'loadtest');
  }

  /**
   * Cuts the connection as a network loss would (no close handshake): the reconnect scenario.
   * The slot's user comes back `offlineS` later and recovers with `since`.
   */
  drop(c: Conn, now: number, offlineS: number): void {
    if (c.state !== 'active') return;
    c.dropped = true;
    this.m.counters.recovery.drops++;
    this.closePlanned(c, now, false, true);
    const st = c.slot;
    setTimeout(() => this.open(st, monoUs()), offlineS * 1000);
  }

  private onClose(c: Conn, code: number): void {
    const now = monoUs();
    const st = c.slot;
    const counters = this.m.counters;
    const wasConnecting = this.connecting.delete(c);
    if (!c.planned) {
      if (wasConnecting) {
        counters.connectFailed++;
        const reason = c.failure || `closed before ${c.state === 'connecting' ? 'welcome' : 'joined'} (${code})`;
        counters.connectFailures[reason] = (counters.connectFailures[reason] ?? 0) + 1;
      } else {
        counters.unexpectedCloses++;
        counters.closeCodes[String(code)] = (counters.closeCodes[String(code)] ?? 0) + 1;
      }
      if (this.m.inWindow(now)) counters.window.errors++;
    }
    this.deactivate(c, now);
    c.state = 'closed';
    if (st.conn === c) st.conn = null;
    // Churn: the slot's user comes back at once with a new connection.
    if (c.planned && this.plan.scenario.kind === 'churn' && !st.retired && now < this.m.endUs && !this.stopping) this.open(st, now);
    if (this.closeWaiter && this.connecting.size === 0 && this.slots.every((s) => !s.conn)) this.closeWaiter();
  }

  /** The end: every slot retires and every connection closes (dropped after CLOSE_WAIT_MS). */
  async closeAll(now: number): Promise<void> {
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
  }
}

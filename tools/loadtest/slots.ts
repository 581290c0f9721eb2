/**
 * What a loadgen thread keeps per user slot (across reconnections) and per connection.
 * A slot is one user: its group, who its `send`s go to, the logs of what it sent and what it
 * received. A connection is one incarnation of that user on the wire.
 */
import type { WsClient } from '../wsclient/client.js';
import type { Receipts } from './duplicates.js';
import { newOrderState, type OrderState } from './order-check.js';
import { DueQueue, F64Log } from './schedule.js';
import type { WorkerPlan } from './types.js';

/** What lives across the reconnections of one slot (one user). */
export interface Slot {
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
  /** Flat [joinedUs, leftUs, …] per connection incarnation (see delivery.ts). */
  intervals: number[];
  /** What the user received over all its connections, per sender slot. */
  pubSeen: Receipts;
  sendSeen: Receipts;
  /** Connections opened so far. */
  connections: number;
  conn: Conn | null;
  /** Not to be reconnected (spike connections after the spike, everything at the end). */
  retired: boolean;
  /** Where the user stands in its group's history (the reconnect scenario's order check). */
  order: OrderState;
}

export type ConnState = 'connecting' | 'joining' | 'active' | 'closing' | 'closed';

export interface Conn {
  slot: Slot;
  ws: WsClient;
  state: ConnState;
  startUs: number;
  /** Index in the pool's active list, -1 when not active. */
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
  /** What this connection received, per sender slot (the slot's own maps for its first one). */
  pubSeen: Receipts;
  sendSeen: Receipts;
  /** It joined with `since` (its first frames are a replay). */
  recovering: boolean;
  /** The reconnect scenario cut it: the slot comes back after offline_s. */
  dropped: boolean;
}

/** Slot `slot` of the scenario: connection i joins group floor(i / group_size). */
export function makeSlot(plan: WorkerPlan, slot: number): Slot {
  const s = plan.scenario;
  const group = Math.floor(slot / s.groupSize);
  const sendTo = s.connections > 1 ? (slot + s.groupSize) % s.connections : slot;
  return {
    slot,
    group,
    user: plan.userPrefix + slot,
    groupName: plan.groupPrefix + group,
    sendTo,
    sendToUser: plan.userPrefix + sendTo,
    pubDue: new F64Log(),
    pubSent: new F64Log(),
    pubAck: new F64Log(),
    sendDue: new F64Log(16),
    sendTo_: new F64Log(16),
    sendAck: new F64Log(16),
    intervals: [],
    pubSeen: new Map(),
    sendSeen: new Map(),
    connections: 0,
    conn: null,
    retired: false,
    order: newOrderState(),
  };
}

/** A new connection of `st`, not yet on the wire (the pool sets `ws`). */
export function newConn(plan: WorkerPlan, st: Slot, nowUs: number): Conn {
  const first = st.connections++ === 0;
  return {
    slot: st,
    state: 'connecting',
    startUs: nowUs,
    activeIndex: -1,
    planned: false,
    failure: '',
    pubInFlight: 0,
    pubWaiting: new DueQueue(),
    pingOutstanding: false,
    pingSentUs: 0,
    pingWaiting: new DueQueue(),
    firstPubSeq: st.pubDue.length,
    pubPrefix: '{"op":"pub","group":' + JSON.stringify(st.groupName) + ',"pri":' + plan.scenario.pri + ',"ref":"p',
    pubSeen: first ? st.pubSeen : new Map(),
    sendSeen: first ? st.sendSeen : new Map(),
    recovering: false,
    dropped: false,
  } as Conn;
}

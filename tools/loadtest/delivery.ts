/**
 * Exact delivery accounting. No sampling, no estimate: every pub carries (publisher slot,
 * seq); each receiver keeps a bitset of the seqs it saw per publisher; each publisher logs
 * when each pub was sent and acknowledged. After the run the main thread decides, for every
 * (receiver, pub) pair of the same group, whether the pub was owed to that receiver:
 *
 *   owed  ⇔  the pub's due time is inside the measurement window,
 *            the server acknowledged it,
 *            and some membership interval [joined, left] of the receiver has
 *            joined <= sent  and  ack <= left - fence.
 *
 * "joined" is when the receiver got `joined`, so a pub sent after it was causally accepted
 * after the join. "left" is when the receiver began closing (or saw the server close it).
 * The fence covers a pub the publisher's shard accepted just before the receiver left but
 * whose copy was still crossing to the receiver's shard: it is not owed (churn only — other
 * scenarios keep everyone connected until the drain ends). Lost = owed − received.
 */
import type { DeliveryData, ReceiverLog } from './types.js';

/** The ack time of a pub whose publisher closed on purpose before the ack came. */
export const ABANDONED = Number.NEGATIVE_INFINITY;

/** A growable set of small non-negative integers (seq numbers). */
export class SeqSet {
  bits: Uint8Array;
  constructor(initialBits = 256) {
    this.bits = new Uint8Array(Math.ceil(initialBits / 8));
  }
  /** Adds `seq`; false if it was already there (a duplicate). */
  add(seq: number): boolean {
    const byte = seq >>> 3;
    if (byte >= this.bits.length) {
      const grown = new Uint8Array(Math.max(byte + 1, this.bits.length * 2));
      grown.set(this.bits);
      this.bits = grown;
    }
    const mask = 1 << (seq & 7);
    if ((this.bits[byte]! & mask) !== 0) return false;
    this.bits[byte]! |= mask;
    return true;
  }
}

export function hasSeq(bits: Uint8Array, seq: number): boolean {
  const byte = seq >>> 3;
  return byte < bits.length && (bits[byte]! & (1 << (seq & 7))) !== 0;
}

export interface DeliveryTotals {
  /** Pub deliveries owed to receivers (see above). */
  pubExpected: number;
  pubReceived: number;
  pubLost: number;
  /** Pubs due in the window that the server never acknowledged (refused, lost, or the publisher was dropped). */
  pubsUnacknowledged: number;
  /** Pubs still in flight when their publisher closed on purpose (churn, end of a spike): neither owed nor errors. */
  pubsAbandonedByClose: number;
  sendExpected: number;
  sendReceived: number;
  sendLost: number;
  /** Acknowledged sends to recipients that were offline at the end: stored, not lost. */
  sendPendingOffline: number;
}

export interface Window {
  startUs: number;
  endUs: number;
  fenceUs: number;
}

/** Every count at zero: the start of computeDelivery(), and a failed scenario's figures. */
export function emptyDeliveryTotals(): DeliveryTotals {
  return {
    pubExpected: 0,
    pubReceived: 0,
    pubLost: 0,
    pubsUnacknowledged: 0,
    pubsAbandonedByClose: 0,
    sendExpected: 0,
    sendReceived: 0,
    sendLost: 0,
    sendPendingOffline: 0,
  };
}

export function computeDelivery(parts: DeliveryData[], w: Window): DeliveryTotals {
  const totals = emptyDeliveryTotals();
  const pubsByGroup = new Map<number, DeliveryData['pubs']>();
  for (const part of parts) {
    for (const p of part.pubs) {
      let list = pubsByGroup.get(p.group);
      if (!list) pubsByGroup.set(p.group, (list = []));
      list.push(p);
      for (let seq = 0; seq < p.dueUs.length; seq++) {
        const due = p.dueUs[seq]!;
        if (due < w.startUs || due >= w.endUs) continue;
        const ack = p.ackUs[seq]!;
        if (Number.isNaN(ack)) totals.pubsUnacknowledged++;
        else if (ack === ABANDONED) totals.pubsAbandonedByClose++;
      }
    }
  }
  const receivers = new Map<number, ReceiverLog>();
  for (const part of parts) for (const r of part.receivers) receivers.set(r.slot, r);

  for (const r of receivers.values()) {
    const seenBy = new Map(r.pubSeen.map((s) => [s.from, s.bits]));
    for (const p of pubsByGroup.get(r.group) ?? []) {
      const bits = seenBy.get(p.slot);
      for (let seq = 0; seq < p.dueUs.length; seq++) {
        const due = p.dueUs[seq]!;
        if (due < w.startUs || due >= w.endUs) continue;
        const ack = p.ackUs[seq]!;
        if (!Number.isFinite(ack)) continue;
        const sent = p.sentUs[seq]!;
        if (!owed(r.intervals, sent, ack, w.fenceUs)) continue;
        totals.pubExpected++;
        if (bits && hasSeq(bits, seq)) totals.pubReceived++;
      }
    }
  }
  totals.pubLost = totals.pubExpected - totals.pubReceived;

  for (const part of parts) {
    for (const s of part.sends) {
      for (let seq = 0; seq < s.dueUs.length; seq++) {
        const due = s.dueUs[seq]!;
        if (due < w.startUs || due >= w.endUs || !Number.isFinite(s.ackUs[seq]!)) continue;
        const target = receivers.get(s.to[seq]!);
        if (!target || !target.connectedAtEnd) {
          totals.sendPendingOffline++;
          continue;
        }
        totals.sendExpected++;
        const bits = target.sendSeen.find((x) => x.from === s.slot)?.bits;
        if (bits && hasSeq(bits, seq)) totals.sendReceived++;
      }
    }
  }
  totals.sendLost = totals.sendExpected - totals.sendReceived;
  return totals;
}

function owed(intervals: number[], sentUs: number, ackUs: number, fenceUs: number): boolean {
  for (let i = 0; i + 1 < intervals.length; i += 2) {
    if (intervals[i]! <= sentUs && ackUs <= intervals[i + 1]! - fenceUs) return true;
  }
  return false;
}

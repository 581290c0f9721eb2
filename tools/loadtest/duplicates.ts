/**
 * Deliveries received twice, told apart by what explains them. A user (slot) may receive the
 * same message twice for three reasons, and only one of them is a server defect:
 *
 *   sameConnection    the same connection got the same pub twice: the server sent it twice.
 *   reconnectOverlap  the user's old connection and its new one (churn reconnects at once) both
 *                     got it: a pub that was crossing to the new connection's shard when it
 *                     joined. Expected.
 *   sendRedelivered   a `send` (`msg` with `ackReq`) came again: at-least-once delivery
 *                     redelivers until the ack arrives, on the same connection after a timeout
 *                     or on the next one. Expected.
 *
 * A message is identified by its marker (sender slot, seq; wire.ts), which is one server id.
 */
import { SeqSet } from './delivery.js';

export type DuplicateKind = 'sameConnection' | 'reconnectOverlap' | 'sendRedelivered';

export const DUPLICATE_KINDS: readonly DuplicateKind[] = ['sameConnection', 'reconnectOverlap', 'sendRedelivered'];

export function noDuplicates(): Record<DuplicateKind, number> {
  return { sameConnection: 0, reconnectOverlap: 0, sendRedelivered: 0 };
}

/** Why a message was received again: `ackReq` marks an at-least-once message. */
export function classifyDuplicate(ackReq: boolean, onSameConnection: boolean): DuplicateKind {
  if (ackReq) return 'sendRedelivered';
  return onSameConnection ? 'sameConnection' : 'reconnectOverlap';
}

/** What one receiver got, per sender slot: a bitset of seqs. */
export type Receipts = Map<number, SeqSet>;

/**
 * Records that a connection received (from, seq). `bySlot` is what the user received over
 * all its connections (what delivery.ts counts); `byConnection` what this connection received.
 * A slot's first connection may pass the same map twice: nothing was received before it.
 * Returns null the first time the user gets the message, else the kind of duplicate.
 */
export function recordReceipt(bySlot: Receipts, byConnection: Receipts, from: number, seq: number, ackReq: boolean, initialBits: number): DuplicateKind | null {
  if (!seqSet(byConnection, from, initialBits).add(seq)) return classifyDuplicate(ackReq, true);
  if (byConnection === bySlot || seqSet(bySlot, from, initialBits).add(seq)) return null;
  return classifyDuplicate(ackReq, false);
}

function seqSet(receipts: Receipts, from: number, initialBits: number): SeqSet {
  let set = receipts.get(from);
  if (!set) receipts.set(from, (set = new SeqSet(initialBits)));
  return set;
}

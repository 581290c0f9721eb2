/**
 * What the broker does when a message's time comes (ack-timers.ts calls these): a scheduled send
 * is routed, a delivery past its ack deadline goes again or, after delivery.max_attempts, is
 * dead-lettered, and a message that waited delivery.ttl for a recipient is dead-lettered.
 */
import type { Config } from '../config/schema.js';
import type { AckTimers } from './ack-timers.js';
import type { BrokerStats } from './broker.js';
import type { Delivery } from './delivery.js';
import type { Presence } from './presence.js';
import { setState, State, type Entry, type Queues } from './queues.js';

export interface DeadlineActionParts {
  delivery: Config['websocket']['delivery'];
  queues: Queues;
  presence: Presence;
  timers: AckTimers;
  route: Delivery;
  counters: BrokerStats;
  /** Whether a shard held records for the broker in its memory, for want of room in its ring, at any time since `since` (ms). */
  behind: ((shard: number, since: number) => boolean) | undefined;
  deadLetter(entry: Entry, reason: string): void;
}

export class DeadlineActions {
  /** Deliveries whose ack deadline passed while their holder's shard was behind: the attempt then, not counted when it times out. */
  private readonly excused = new WeakMap<Entry, number>();

  constructor(private readonly parts: DeadlineActionParts) {}

  /** A scheduled send is due. */
  due(entry: Entry): void {
    if (entry.state !== State.SCHEDULED || !this.parts.queues.holds(entry)) return;
    setState(entry, State.WAITING);
    this.parts.route.route(entry);
  }

  /** No ack by the deadline: deliver again, or dead-letter after max_attempts. */
  unacknowledged(entry: Entry): void {
    const { queues, timers, counters, delivery, route } = this.parts;
    if (entry.state !== State.INFLIGHT || !queues.holds(entry)) return;
    // The ack may wait behind the backlog, or have been refused for it: the message waits again,
    // and this attempt does not count (else a long backlog dead-letters acknowledged messages).
    if (this.holderBehind(entry)) {
      this.excused.set(entry, entry.m.attempts);
      return timers.postpone(entry);
    }
    const excused = this.excused.get(entry);
    this.excused.delete(entry);
    // Counted here when its number is 1 again: markInflight counts only second attempts and later.
    if (excused === entry.m.attempts && --entry.m.attempts === 0) counters.redelivered++;
    if (entry.m.attempts >= delivery.max_attempts) {
      this.parts.deadLetter(entry, `not acknowledged after ${entry.m.attempts} deliveries (delivery.max_attempts)`);
    } else {
      route.route(entry);
    }
  }

  /** A message waited delivery.ttl for a recipient that never came. */
  expired(entry: Entry): void {
    if (entry.state !== State.WAITING || !this.parts.queues.holds(entry)) return;
    this.parts.counters.expired++;
    this.parts.deadLetter(entry, `expired: waited ${this.parts.delivery.ttl} s for a recipient (delivery.ttl)`);
  }

  /**
   * Whether a shard of the delivery's holder was backed up at any time since the delivery went
   * out: its ack may have been refused then (the shard said it would come again), though the
   * backlog had drained by the deadline.
   */
  private holderBehind(entry: Entry): boolean {
    const { behind, presence, timers } = this.parts;
    const holder = entry.holder;
    if (behind === undefined || holder === null) return false;
    const sentAt = Date.now() - timers.ackWaitS(entry.m.attempts) * 1000;
    for (const conn of presence.connectionsOf(holder)?.values() ?? []) if (behind(conn.shard, sentAt)) return true;
    return false;
  }
}

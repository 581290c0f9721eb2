/**
 * The broker's in-memory index of stored messages, and the limits on what they may hold: every
 * message by id, and per recipient (`u:USER`, `g:GROUP`) one lane per priority, so delivery
 * order (priority high to low, then acceptance) needs no sorting, and the recipient's cap can
 * find the oldest LOW message to drop. It also counts messages per sender and in all (with
 * their data's bytes), so a send can be refused before anything is written.
 *
 * An entry holds the message's metadata only: its data stays on disk (MessageStore.body) once
 * it is stored, except between acceptance and the first delivery encoded from it.
 */
import type { MessageMeta } from '../store/messages.js';
import type { Timed } from './deadlines.js';
import type { HeapItem } from './heap.js';

export const enum State {
  /**
   * Written to the store, commit not yet confirmed, and not to be delivered before it is: a
   * scheduled send, a requeued dead letter. (A send for now is delivered while its commit runs:
   * it is WAITING or INFLIGHT with `storing` set.)
   */
  STORING,
  /** Stored with a future `at`. */
  SCHEDULED,
  /** Stored, waiting for a recipient (offline user, `any` group without members). */
  WAITING,
  /** Delivered, awaiting `ack` until its deadline. */
  INFLIGHT,
}

export interface Entry extends Timed, HeapItem {
  m: MessageMeta;
  state: State;
  /** INFLIGHT: the user whose in-flight count includes this entry. */
  holder: string | null;
  /**
   * The data (JSON text) while it is at hand anyway: from acceptance until first encoded, and
   * at least until its commit (before it, the store cannot give it back); null after, read from the store.
   */
  body: string | null;
  /**
   * Its store write until committed (then null). Meanwhile it may already be delivered, but it is
   * not evicted, and its dead-lettering waits for the commit (broker.ts).
   */
  storing: Promise<boolean> | null;
  /** epochMs() of its arrival (its shard's receive time) while it goes straight out to an online recipient; 0 otherwise (send latency). */
  readyAt: number;
  /** epochMs() of its last delivery, for the ack latency; 0 before the first. */
  deliveredAt: number;
  /** While held: its recipient's count of entries per state, which setState keeps. */
  tally: StateCounts | null;
}

/** Entries per State (the index), so that a new connection's `welcome` is not a walk of its user's queue. */
type StateCounts = [number, number, number, number];

/** Changes `entry`'s state; every change goes through here, so the recipient's counts stay true. */
export function setState(entry: Entry, state: State): void {
  const tally = entry.tally;
  if (tally !== null) {
    tally[entry.state]--;
    tally[state]++;
  }
  entry.state = state;
}

/** The bounds on stored messages (config: delivery.max_pending_per_user, delivery.max_stored_per_sender and _bytes_per_sender, store.max_messages, store.max_bytes). */
export interface StoreLimits {
  perRecipient: number;
  perSender: number;
  perSenderBytes: number;
  messages: number;
  bytes: number;
}

interface Target {
  /**
   * One ordered map per priority (index = pri), made when first used: most recipients that
   * wait have one or two messages, and four maps each cost ~0.7 KB per recipient. Insertion
   * order is acceptance order.
   */
  lanes: [Lane, Lane, Lane, Lane];
  size: number;
  counts: StateCounts;
}
type Lane = Map<string, Entry> | null;

export function newEntry(m: MessageMeta, state: State, body: string | null = null): Entry {
  return { m, state, holder: null, body, storing: null, readyAt: 0, deliveredAt: 0, tally: null, deadline: 0, prev: null, next: null, list: -1, heapTime: 0, heapIndex: -1 };
}

export class Queues {
  private readonly targets = new Map<string, Target>();
  private readonly byId = new Map<string, Entry>();
  private readonly bySender = new Map<string, number>();
  private readonly bytesBySender = new Map<string, number>();
  private totalBytes = 0;

  constructor(private readonly limits: StoreLimits) {}

  /** Messages held, in every state. */
  get size(): number {
    return this.byId.size;
  }

  /** Bytes of data of the messages held. */
  get bytes(): number {
    return this.totalBytes;
  }

  get(id: string): Entry | undefined {
    return this.byId.get(id);
  }

  /** False once a message was acknowledged, dead-lettered or failed to store: timers still holding it skip it. */
  has(id: string): boolean {
    return this.byId.has(id);
  }

  /**
   * Whether `entry` itself is held, not another with its id: a requeued dead letter comes back
   * under its id as a new entry, and a timer that fires for the old one must not touch it.
   */
  holds(entry: Entry): boolean {
    return this.byId.get(entry.m.id) === entry;
  }

  insert(entry: Entry): void {
    const m = entry.m;
    let target = this.targets.get(m.target);
    if (!target) this.targets.set(m.target, (target = { lanes: [null, null, null, null], size: 0, counts: [0, 0, 0, 0] }));
    (target.lanes[m.pri] ??= new Map()).set(m.id, entry);
    target.size++;
    target.counts[entry.state]++;
    entry.tally = target.counts;
    this.byId.set(m.id, entry);
    this.bySender.set(m.from, (this.bySender.get(m.from) ?? 0) + 1);
    this.bytesBySender.set(m.from, (this.bytesBySender.get(m.from) ?? 0) + m.bytes);
    this.totalBytes += m.bytes;
  }

  /** Removes `entry`; nothing when it is not held (an older entry with a requeued letter's id included). */
  remove(entry: Entry): void {
    const m = entry.m;
    if (!this.holds(entry)) return;
    this.byId.delete(m.id);
    if (entry.tally !== null) entry.tally[entry.state]--;
    entry.tally = null;
    const target = this.targets.get(m.target);
    if (target && target.lanes[m.pri]?.delete(m.id)) {
      target.size--;
      if (target.size === 0) this.targets.delete(m.target);
    }
    const sent = (this.bySender.get(m.from) ?? 1) - 1;
    if (sent <= 0) {
      this.bySender.delete(m.from);
      this.bytesBySender.delete(m.from);
    } else {
      this.bySender.set(m.from, sent);
      this.bytesBySender.set(m.from, (this.bytesBySender.get(m.from) ?? 0) - m.bytes);
    }
    this.totalBytes -= m.bytes;
  }

  /** How many of `target`'s entries are in `state`. */
  count(target: string, state: State): number {
    return this.targets.get(target)?.counts[state] ?? 0;
  }

  /** Every entry, in no particular order. */
  all(): IterableIterator<Entry> {
    return this.byId.values();
  }

  /**
   * `target`'s entries in delivery order, without a copy: do not insert while iterating (an
   * entry removed meanwhile, a CRITICAL delivery's encode finding its data gone, is skipped).
   */
  *ordered(target: string): Generator<Entry> {
    const queue = this.targets.get(target);
    if (!queue) return;
    for (let pri = 3; pri >= 0; pri--) {
      const lane = queue.lanes[pri];
      if (lane) yield* lane.values();
    }
  }

  /** A copy of `target`'s entries in delivery order: priority high to low, then acceptance. */
  inOrder(target: string): Entry[] {
    const queue = this.targets.get(target);
    const entries: Entry[] = [];
    if (!queue) return entries;
    for (let pri = 3; pri >= 0; pri--) for (const entry of queue.lanes[pri]?.values() ?? []) entries.push(entry);
    return entries;
  }

  /**
   * Whether one more message of `bytes` from `from` to `target` fits; null when it does, else
   * why not, naming the limit. The store's limits come first, then the sender's (unless
   * `checkSender` is false: the embedding API and requeues are trusted), then the recipient's:
   * at its cap, its oldest LOW message not delivered yet makes room, and `evict` must take it out
   * (dead-letter it); a queue full of non-LOW messages refuses.
   */
  admit(target: string, from: string, bytes: number, checkSender: boolean, evict: (entry: Entry) => void): string | null {
    const { messages, bytes: maxBytes, perSender, perSenderBytes, perRecipient } = this.limits;
    if (this.byId.size >= messages) return `the store holds ${this.byId.size} messages (store.max_messages)`;
    if (this.totalBytes + bytes > maxBytes) return `the store holds ${this.totalBytes} bytes of messages; this one has ${bytes} (store.max_bytes)`;
    const sent = this.bySender.get(from) ?? 0;
    if (checkSender && sent >= perSender) return `${from} has ${sent} stored messages (delivery.max_stored_per_sender)`;
    const sentBytes = this.bytesBySender.get(from) ?? 0;
    if (checkSender && sentBytes + bytes > perSenderBytes) return `${from} has ${sentBytes} bytes of stored messages; this one has ${bytes} (delivery.max_stored_bytes_per_sender)`;
    const queue = this.targets.get(target);
    if (!queue || queue.size < perRecipient) return null;
    for (const entry of queue.lanes[0]?.values() ?? []) {
      // Not one whose commit is still running: its dead letter could not be written before it.
      // Nor one the recipient holds: it was delivered, and its ack must still be taken.
      if (entry.state === State.STORING || entry.state === State.INFLIGHT || entry.storing !== null) continue;
      evict(entry);
      return null;
    }
    return `${target.slice(2)} has ${queue.size} stored messages (delivery.max_pending_per_user) and none of them is LOW and waiting (not delivered already)`;
  }
}

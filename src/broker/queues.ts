/**
 * The broker's in-memory index of stored messages: every message by id, and per recipient
 * (`u:USER`, `g:GROUP`) one lane per priority, so delivery order (priority high to low, then
 * acceptance) needs no sorting, and the cap (delivery.max_pending_per_user) can find the
 * oldest LOW message to drop.
 */
import type { StoredMessage } from '../store/store.js';
import type { Timed } from './deadlines.js';

export const enum State {
  /** Written to the store, commit not yet confirmed: invisible to recipients. */
  STORING,
  /** Stored with a future `at`. */
  SCHEDULED,
  /** Stored, waiting for a recipient (offline user, `any` group without members). */
  WAITING,
  /** Delivered, awaiting `ack` until its deadline. */
  INFLIGHT,
}

export interface Entry extends Timed {
  m: StoredMessage;
  state: State;
  /** INFLIGHT: the user whose in-flight count includes this entry. */
  holder: string | null;
  /** The encoded msg frame, built on first delivery. */
  frame: string | null;
  /** epochMs() of its store commit while it goes straight out to an online recipient; 0 otherwise (send latency). */
  readyAt: number;
  /** epochMs() of its last delivery, for the ack latency; 0 before the first. */
  deliveredAt: number;
}

interface Target {
  /** One ordered map per priority (index = pri); insertion order is acceptance order. */
  lanes: [Map<string, Entry>, Map<string, Entry>, Map<string, Entry>, Map<string, Entry>];
  size: number;
}

export function newEntry(m: StoredMessage, state: State): Entry {
  return { m, state, holder: null, frame: null, readyAt: 0, deliveredAt: 0, deadline: 0, prev: null, next: null, list: -1 };
}

export class Queues {
  private readonly targets = new Map<string, Target>();
  private readonly byId = new Map<string, Entry>();

  constructor(private readonly maxPending: number) {}

  /** Messages held, in every state. */
  get size(): number {
    return this.byId.size;
  }

  get(id: string): Entry | undefined {
    return this.byId.get(id);
  }

  /** False once a message was acknowledged, dead-lettered or failed to store: timers still holding it skip it. */
  has(id: string): boolean {
    return this.byId.has(id);
  }

  insert(entry: Entry): void {
    let target = this.targets.get(entry.m.target);
    if (!target) this.targets.set(entry.m.target, (target = { lanes: [new Map(), new Map(), new Map(), new Map()], size: 0 }));
    target.lanes[entry.m.pri]!.set(entry.m.id, entry);
    target.size++;
    this.byId.set(entry.m.id, entry);
  }

  remove(entry: Entry): void {
    this.byId.delete(entry.m.id);
    const target = this.targets.get(entry.m.target);
    if (target && target.lanes[entry.m.pri]!.delete(entry.m.id)) {
      target.size--;
      if (target.size === 0) this.targets.delete(entry.m.target);
    }
  }

  /** A copy of `target`'s entries in delivery order: priority high to low, then acceptance. */
  inOrder(target: string): Entry[] {
    const queue = this.targets.get(target);
    const entries: Entry[] = [];
    if (!queue) return entries;
    for (let pri = 3; pri >= 0; pri--) for (const entry of queue.lanes[pri]!.values()) entries.push(entry);
    return entries;
  }

  /**
   * Whether `target` can take one more message. At the cap, its oldest stored LOW message makes
   * room: `evict` must take it out (dead-letter it). False when the queue is full and has no
   * stored LOW message; the send is then refused.
   */
  admit(target: string, evict: (entry: Entry) => void): boolean {
    const queue = this.targets.get(target);
    if (!queue || queue.size < this.maxPending) return true;
    for (const entry of queue.lanes[0].values()) {
      if (entry.state === State.STORING) continue;
      evict(entry);
      return true;
    }
    return false;
  }

  /** How many messages `target` holds. */
  sizeOf(target: string): number {
    return this.targets.get(target)?.size ?? 0;
  }
}

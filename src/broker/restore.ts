/**
 * Loading what the store holds into the broker's memory: at start-up by the process that holds
 * the store's lease, and by a process that stood by when it takes the lease over (ownership.ts).
 * A take-over skips what the process already holds or removed meanwhile, and its recipients may
 * already be connected: what can go out does at once, the rest waits as after a start-up.
 */
import type { MessageStore } from '../store/store.js';
import { OnDemandTimer } from '../util/on-demand-timer.js';
import type { AckTimers } from './ack-timers.js';
import type { MessageIds } from './ids.js';
import { newEntry, setState, State, type Entry, type Queues } from './queues.js';

export interface RestoreParts {
  store: MessageStore;
  queues: Queues;
  ids: MessageIds;
  timers: AckTimers;
}

/**
 * Loads every stored message but those `skip` names: scheduled ones onto the schedule, the rest
 * waiting for a recipient (their delivery.ttl counted from when they became deliverable).
 * Returns how many were loaded, and the recipients (`u:USER`, `g:GROUP`) of those now waiting:
 * after a take-over some are connected, and get them in queue order (Delivery.resume).
 */
export function restoreStored(parts: RestoreParts, skip: (id: string) => boolean): { loaded: number; targets: Set<string> } {
  const { store, queues, ids, timers } = parts;
  const now = Date.now();
  const waiting: Array<{ entry: Entry; since: number }> = [];
  const targets = new Set<string>();
  let loaded = 0;
  for (const m of store.loadQueue()) {
    ids.saw(m.seq);
    if (skip(m.id)) continue;
    loaded++;
    const entry = newEntry(m, State.WAITING);
    queues.insert(entry);
    // An `at` beyond max_schedule_ahead (stored by an older version) is kept: the timer reaches it in steps.
    if (Number.isFinite(m.at) && m.at > now) {
      setState(entry, State.SCHEDULED);
      timers.scheduleAt(entry, m.at);
    } else {
      waiting.push({ entry, since: Number.isFinite(m.at) ? Math.max(m.ts, m.at) : m.ts });
      targets.add(m.target);
    }
  }
  // Oldest first, so that the expiry list is in deadline order.
  waiting.sort((a, b) => a.since - b.since);
  for (const { entry, since } of waiting) timers.wait(entry, since);
  timers.arm();
  return { loaded, targets };
}

/** How long removals are gathered before waiting for a flush after them. */
const SETTLE_MS = 1000;

/**
 * Ids a standing-by broker removed (acknowledged, dead-lettered) whose removal may not be
 * committed yet: a take-over must not load them back. Kept only until a flush after them, so
 * that a process standing by for long holds only the last second or two of them. The timer
 * runs only while removals wait to be settled: a broker standing by idle sets none.
 */
export class UncommittedRemovals {
  private recent = new Set<string>();
  private readonly settling = new Set<Set<string>>();
  private readonly timer = new OnDemandTimer(() => this.settle());

  constructor(private readonly store: MessageStore) {}

  add(id: string): void {
    this.recent.add(id);
    this.timer.arm(SETTLE_MS);
  }

  has(id: string): boolean {
    if (this.recent.has(id)) return true;
    for (const ids of this.settling) if (ids.has(id)) return true;
    return false;
  }

  /** Whether the settle timer is armed (tests). */
  get pending(): boolean {
    return this.timer.armed;
  }

  stop(): void {
    this.timer.stop();
  }

  private settle(): void {
    const ids = this.recent;
    this.recent = new Set();
    this.settling.add(ids);
    void this.store.flushed().then(() => this.settling.delete(ids));
  }
}

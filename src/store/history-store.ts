/**
 * Group history in the store (history.persist), beside the queues in the same LMDB environment:
 *   history         key [group, epoch, offset] -> [ts, head]   a kept message (its frame without the offset tail)
 *   history_groups  key group                  -> {epoch, top}
 *                   key OWNER                  -> {instance, clean}
 * Writes mirror what the broker's History does in memory, asynchronously (a pub never waits
 * for the disk), so a crash can lose the last few: offsets clients have seen could then be
 * given out again. Hence the OWNER mark: a process writes {itself, clean: false} when it loads,
 * and {itself, clean: true} only when it stops having written everything. A load that finds
 * the mark not clean (a crash, a failed write, or another process still running: a pm2
 * reload's overlap) keeps the messages but gives every group a new epoch, so no client can
 * mistake them for what it saw. An epoch is only ever written by one process: the entry keys
 * carry it, so two processes sharing the store never mix their messages.
 */
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import type { Database } from 'lmdb';
import type { MessageStore } from './store.js';

/** What the broker's History tells its persistence (this store implements it). */
export interface HistoryPersistence {
  /** A message got `offset` (its frame is `head` plus the offset tail); the group's top is now `offset`. */
  appended(group: string, epoch: string, offset: number, ts: number, head: string): void;
  /** A kept message was pushed out (size, ttl, max_bytes). */
  removed(group: string, epoch: string, offset: number): void;
  /** A group's history was made (epoch, top 0) or forgotten (null). */
  group(group: string, state: { epoch: string; top: number } | null): void;
}

/** A group as the last run left it: its epoch, top and kept messages (their frames' heads), oldest first. */
export interface LoadedGroup {
  group: string;
  epoch: string;
  top: number;
  entries: Array<{ offset: number; ts: number; head: string }>;
}

/** A new epoch: random, made whenever a group's history is made in memory (or re-tagged). */
export function newEpoch(): string {
  return randomBytes(8).toString('hex');
}

type EntryKey = [string, string, number];
type GroupState = { epoch: string; top: number };
type OwnerMark = { instance: string; clean: boolean };

/** Not a group name (NAME_PATTERN has no space). */
const OWNER = ' owner';

export class HistoryStore implements HistoryPersistence {
  /** A write failed since the load: this run cannot stop clean. */
  private failed = false;

  private constructor(
    private readonly store: MessageStore,
    private readonly entries: Database<[number, string], EntryKey>,
    private readonly groups: Database<GroupState | OwnerMark, string>,
    private readonly instance: string,
  ) {}

  static open(store: MessageStore, instance: string): HistoryStore {
    return new HistoryStore(store, store.openDb('history'), store.openDb('history_groups'), instance);
  }

  /**
   * A run that writes no history (history.persist off, or no group keeps history) on a store
   * that holds some: what it publishes is not kept, so a later run that persists again must not
   * vouch for the epochs stored (clients would be told `recovered` across what this run
   * published). The owner mark, not clean, makes that run give every group a new epoch; an older
   * run still stopping (a pm2 reload) no longer owns the mark, so it leaves it. False when the
   * store could not write.
   */
  static disown(store: MessageStore, instance: string): Promise<boolean> {
    const groups = store.openDb<GroupState | OwnerMark, string>('history_groups');
    if (groups.get(OWNER) === undefined) return Promise.resolve(true);
    return store.guardedWrite(() => groups.put(OWNER, { instance, clean: false }), 64);
  }

  /**
   * What the last run kept, for the groups that still keep history (`keeps`), and marks this
   * run as the owner. `clean`: the last run stopped cleanly, so its epochs stand; otherwise
   * every group got a new epoch (and its messages were re-written under it).
   */
  load(keeps: (group: string) => boolean, sizeOf: (group: string) => number): { clean: boolean; groups: LoadedGroup[] } {
    const mark = this.groups.get(OWNER) as OwnerMark | undefined;
    const clean = mark === undefined || mark.clean;
    const states = new Map<string, GroupState>();
    for (const { key, value } of this.groups.getRange({})) {
      if (key === OWNER) continue;
      if (keeps(key)) states.set(key, value as GroupState);
      else this.write(() => this.groups.remove(key), 0);
    }
    const loaded = new Map<string, LoadedGroup>();
    for (const { key, value } of this.entries.getRange({})) {
      const [group, epoch, offset] = key;
      const state = states.get(group);
      // Not of the group's current epoch, or past its top: left by a write that failed, or by another process.
      if (state === undefined || state.epoch !== epoch || offset > state.top) {
        this.write(() => this.entries.remove(key), 0);
        continue;
      }
      let g = loaded.get(group);
      if (g === undefined) loaded.set(group, (g = { group, epoch, top: state.top, entries: [] }));
      const [ts, head] = value;
      g.entries.push({ offset, ts, head });
    }
    for (const [group, state] of states) {
      const g = loaded.get(group) ?? { group, epoch: state.epoch, top: state.top, entries: [] };
      for (const offset of keepTail(g, sizeOf(group))) this.write(() => this.entries.remove([group, g.epoch, offset]), 0);
      if (!clean) this.retag(g);
      loaded.set(group, g);
    }
    this.write(() => this.groups.put(OWNER, { instance: this.instance, clean: false }), 64);
    return { clean, groups: [...loaded.values()] };
  }

  appended(group: string, epoch: string, offset: number, ts: number, head: string): void {
    this.write(() => this.entries.put([group, epoch, offset], [ts, head]), Buffer.byteLength(head));
    this.write(() => this.groups.put(group, { epoch, top: offset }), 64);
  }

  removed(group: string, epoch: string, offset: number): void {
    this.write(() => this.entries.remove([group, epoch, offset]), 0);
  }

  group(group: string, state: GroupState | null): void {
    if (state === null) this.write(() => this.groups.remove(group), 0);
    else this.write(() => this.groups.put(group, state), 64);
  }

  /**
   * This run takes the store over from another process (the store's lease): its owner mark,
   * and its groups' states (`states`), written again over whatever the other one wrote last.
   */
  reclaim(states: Iterable<{ group: string; epoch: string; top: number }>): void {
    this.write(() => this.groups.put(OWNER, { instance: this.instance, clean: false }), 64);
    for (const { group, epoch, top } of states) this.write(() => this.groups.put(group, { epoch, top }), 64);
  }

  /**
   * This run stopped: clean, unless a write failed or another process owns the store now.
   * `holder`: this process held the store's lease. One that stood by may own the mark (it
   * loaded the history once history.handover_wait ran out) while the holder still writes its
   * groups under its own epochs: marked clean, a later load would trust them after the holder's
   * crash. Resolves once written.
   */
  async close(holder: boolean): Promise<void> {
    await this.store.flushed();
    const mark = this.groups.get(OWNER) as OwnerMark | undefined;
    if (mark?.instance !== this.instance || !holder) return;
    await this.write(() => this.groups.put(OWNER, { instance: this.instance, clean: !this.failed }), 64);
  }

  /** The group under a new epoch: its messages written again under it, the old keys removed. */
  private retag(g: LoadedGroup): void {
    const old = g.epoch;
    const epoch = newEpoch();
    for (const { offset, ts, head } of g.entries) {
      this.write(() => this.entries.put([g.group, epoch, offset], [ts, head]), Buffer.byteLength(head));
      this.write(() => this.entries.remove([g.group, old, offset]), 0);
    }
    this.write(() => this.groups.put(g.group, { epoch, top: g.top }), 64);
    g.epoch = epoch;
  }

  private write(write: () => Promise<boolean>, bytes: number): Promise<void> {
    return this.store.guardedWrite(write, bytes).then((ok) => {
      if (!ok) this.failed = true;
    });
  }
}

/**
 * Keeps the run of messages that ends at the group's top, at most `size` of them (its rule may
 * have shrunk); anything before a hole goes (offsets must be consecutive). Returns the offsets dropped.
 */
function keepTail(g: LoadedGroup, size: number): number[] {
  let start = g.entries.length;
  let expected = g.top;
  while (start > 0 && g.entries[start - 1]!.offset === expected && g.entries.length - start < size) {
    start--;
    expected--;
  }
  const dropped = g.entries.slice(0, start).map((e) => e.offset);
  g.entries = g.entries.slice(start);
  return dropped;
}

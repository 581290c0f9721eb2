/**
 * Group history, in the broker: the one place where a history group's messages get their
 * offsets, so that offsets have no gaps whichever shard a pub came from. Each group matching
 * websocket.history has a GroupLog (its epoch, top offset and kept messages); all of them are
 * bounded together by history.max_groups and history.max_bytes, each by its rule's size and
 * ttl. With history.persist every change is mirrored into the store (HistoryPersistence), and a
 * clean restart brings back the same epochs and offsets.
 *
 * Epoch: a random string made when a group's history is made in memory. It changes whenever
 * what a client may hold can no longer be vouched for: a restart without persistence, a
 * restart after a crash, a group forgotten for max_groups.
 */
import type { Config } from '../config/schema.js';
import { encodeHistoryMsgHead, msgTail } from '../protocol/json-group-frames.js';
import type { HistoryPatterns } from '../shared/history-patterns.js';
import { newEpoch, type HistoryPersistence, type LoadedGroup } from '../store/history-store.js';
import { GroupLog, type LogEntry } from './group-log.js';

export interface HistoryOptions {
  patterns: HistoryPatterns;
  limits: Config['history'];
  persistence?: HistoryPersistence | null;
  /** Whether `group` has members now: a group without any is forgotten first (max_groups). */
  hasMembers?(group: string): boolean;
  /** Some log now holds messages that a ttl will expire, where none did: sweep() has work again. */
  onExpiring?(): void;
  now?(): number;
}

/** Groups looked at, least recently used first, for one without members to forget. */
const FORGET_SCAN = 64;

/** What /stats and /metrics show of history: what is kept now, and counters since start. */
export interface HistoryStats {
  groups: number;
  messages: number;
  bytes: number;
  /** Groups forgotten to make room for another (history.max_groups). */
  groups_forgotten: number;
  /** Messages pushed out by history.max_bytes. */
  evicted_for_bytes: number;
  /** Messages dropped past their group's ttl. */
  expired: number;
}

export class History {
  /** Every group's log, least recently used first (a use moves it to the end). */
  private readonly logs = new Map<string, GroupLog>();
  /** Logs holding messages, least recently appended first: where max_bytes takes from. */
  private readonly filled = new Map<string, GroupLog>();
  /** Logs that never held a message (top 0), oldest first: forgotten before any other (forgetOne). */
  private readonly unused = new Set<GroupLog>();
  /** Logs holding messages under a ttl: what sweep() looks at (the rest never expire). */
  private readonly expiring = new Set<GroupLog>();
  private bytes = 0;
  /** Messages kept, all groups: counted beside `bytes`, so that reading it walks no group. */
  private messages = 0;
  private readonly persistence: HistoryPersistence | null;
  private readonly now: () => number;
  /** Since start; read through `stats`. */
  private readonly counters = { groups_forgotten: 0, evicted_for_bytes: 0, expired: 0 };

  constructor(private readonly options: HistoryOptions) {
    this.persistence = options.persistence ?? null;
    this.now = options.now ?? Date.now;
  }

  /** Read once per metrics interval (a copy: the render comes a turn later). */
  get stats(): HistoryStats {
    return { groups: this.logs.size, messages: this.messages, bytes: this.bytes, ...this.counters };
  }

  /** Whether some kept message has a ttl: while none has, sweep() has nothing to do. */
  get hasExpiring(): boolean {
    return this.expiring.size > 0;
  }

  keeps(group: string): boolean {
    return this.options.patterns.keeps(group);
  }

  /** Groups from the store (history.persist), before anything else happens. */
  restore(loaded: Iterable<LoadedGroup>): void {
    for (const { group, epoch, top, entries } of loaded) {
      const rule = this.options.patterns.ruleOf(group);
      if (rule === null) continue;
      const log = new GroupLog(group, epoch, rule.size, rule.ttl * 1000, top);
      for (const { offset, ts, head } of entries) log.restore(head + msgTail(offset, log.epoch), ts);
      this.logs.set(group, log);
      if (top === 0) this.unused.add(log);
      this.bytes += log.bytes;
      this.messages += log.count;
      if (log.count > 0) {
        this.filled.set(group, log);
        this.watchExpiry(log);
      }
    }
    // The limits may have shrunk since.
    while (this.logs.size > this.options.limits.max_groups) this.forgetOne();
    this.fitBytes();
    this.sweep();
  }

  /** Every group's epoch and top offset. */
  *states(): Generator<{ group: string; epoch: string; top: number }> {
    for (const log of this.logs.values()) yield { group: log.group, epoch: log.epoch, top: log.top };
  }

  /** The log of `group`, made (with a new epoch) if it has none; null when the group keeps no history. */
  open(group: string): GroupLog | null {
    let log = this.logs.get(group);
    if (log !== undefined) {
      this.logs.delete(group);
      this.logs.set(group, log);
      this.expire(log);
      return log;
    }
    const rule = this.options.patterns.ruleOf(group);
    if (rule === null) return null;
    if (this.logs.size >= this.options.limits.max_groups) this.forgetOne();
    log = new GroupLog(group, newEpoch(), rule.size, rule.ttl * 1000);
    this.logs.set(group, log);
    this.unused.add(log);
    this.persistence?.group(group, { epoch: log.epoch, top: 0 });
    return log;
  }

  /**
   * The next message of `group`: its offset and its `msg` frame (with offset and epoch), or
   * null when the group keeps no history.
   */
  append(group: string, id: string, from: string, dataJson: string, pri: number, ts: number): { offset: number; frame: string } | null {
    const log = this.open(group);
    if (log === null) return null;
    const head = encodeHistoryMsgHead(id, from, group, dataJson, pri, ts);
    const { offset, entry } = log.append(head, ts, this.evicted);
    this.unused.delete(log);
    this.bytes += entry.bytes;
    this.messages++;
    this.filled.delete(group);
    this.filled.set(group, log);
    this.watchExpiry(log);
    this.persistence?.appended(group, log.epoch, offset, ts, head);
    this.fitBytes();
    return { offset, frame: entry.frame };
  }

  /** Drops every message older than its group's ttl (the broker calls this while hasExpiring). */
  sweep(): void {
    for (const log of this.expiring) this.expire(log);
  }

  /** `log` holds messages: one for sweep() when its rule has a ttl. */
  private watchExpiry(log: GroupLog): void {
    if (log.ttlMs === 0 || this.expiring.has(log)) return;
    this.expiring.add(log);
    if (this.expiring.size === 1) this.options.onExpiring?.();
  }

  private expire(log: GroupLog): void {
    const dropped = log.expire(this.now(), this.evicted);
    if (dropped > 0) this.counters.expired += dropped;
  }

  /** Over max_bytes: the oldest messages of the group appended to least recently go first. */
  private fitBytes(): void {
    const max = this.options.limits.max_bytes;
    while (this.bytes > max) {
      const oldest = this.filled.values().next();
      if (oldest.done) return;
      oldest.value.dropOldest(this.evicted);
      this.counters.evicted_for_bytes++;
    }
  }

  /**
   * Room for one more group: forget one that never held a message and has no members (nobody
   * can hold an offset of it: a `history` query or a join of a new group made it), else the
   * least recently used one without members, else the least recently used. Without the first
   * rule, queries of unused groups pushed out the history of real ones.
   */
  private forgetOne(): void {
    let scanned = 0;
    for (const log of this.unused) {
      if (!(this.options.hasMembers?.(log.group) ?? false)) return this.forget(log.group);
      if (++scanned >= FORGET_SCAN) break;
    }
    let victim: GroupLog | null = null;
    scanned = 0;
    for (const log of this.logs.values()) {
      victim ??= log;
      if (!(this.options.hasMembers?.(log.group) ?? false)) {
        victim = log;
        break;
      }
      if (++scanned >= FORGET_SCAN) break;
    }
    if (victim !== null) this.forget(victim.group);
  }

  /** Forgets what `group` kept: its next message starts a new epoch (clients holding the old one reload). */
  private forget(group: string): void {
    const log = this.logs.get(group);
    if (log === undefined) return;
    while (log.dropOldest(this.evicted));
    this.logs.delete(group);
    this.unused.delete(log);
    this.counters.groups_forgotten++;
    this.persistence?.group(group, null);
  }

  /** An entry a log pushed out: counted off, forgotten in the store. */
  private readonly evicted = (log: GroupLog, offset: number, entry: LogEntry): void => {
    this.bytes -= entry.bytes;
    this.messages--;
    if (log.count === 0) {
      this.filled.delete(log.group);
      this.expiring.delete(log);
    }
    this.persistence?.removed(log.group, log.epoch, offset);
  };
}

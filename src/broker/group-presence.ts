/**
 * Who is in each group, over every shard: each user's connections in it, and which
 * connections watch it (joined with `presence: true`). Answers the `presence` op, and tells
 * watchers who came and went: users, not connections (a user's second tab is no news), and
 * coalesced over websocket.presence.window, so that a connection flapping in and out within it
 * makes no event at all. Fed by the broker's Presence (presence.ts), which hears every join,
 * leave and closed connection, and forgets a dead shard's connections.
 */
import { Buffer } from 'node:buffer';
import { encodePresenceAnswer, encodePresenceEvent } from '../protocol/json-group-frames.js';

interface GroupState {
  /** User → its connections in the group. */
  users: Map<string, number>;
  conns: number;
  /** Connections that asked for events. */
  watchers: number;
  /** Users changed in the current window → whether each was in the group when the window began. */
  before: Map<string, boolean> | null;
}

export interface GroupPresenceOptions {
  /** Groups with more users answer the totals only (websocket.presence.max_list); events carry at most this many names. */
  maxList: number;
  /** websocket.presence.window, in ms. */
  windowMs: number;
  /** The largest frame the link to the shards carries: answers and events are kept under it. */
  maxFrameBytes: number;
  /** Publishes an event frame to the watchers of `group` on every shard. */
  emit(group: string, frame: string): void;
}

export class GroupPresence {
  private readonly groups = new Map<string, GroupState>();
  /** Groups with changes in the current window. */
  private readonly dirty = new Set<string>();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly options: GroupPresenceOptions) {}

  /** A connection of `user` joined `group`; `watch`: it wants events. */
  joined(group: string, user: string, watch: boolean): void {
    let state = this.groups.get(group);
    if (state === undefined) this.groups.set(group, (state = { users: new Map(), conns: 0, watchers: 0, before: null }));
    const count = state.users.get(user) ?? 0;
    if (count === 0) this.changed(group, state, user, false);
    state.users.set(user, count + 1);
    state.conns++;
    if (watch) state.watchers++;
  }

  /** A connection of `user` left `group` (or closed, or its shard died); `watched`: it had asked for events. */
  left(group: string, user: string, watched: boolean): void {
    const state = this.groups.get(group);
    if (state === undefined) return;
    const count = state.users.get(user) ?? 0;
    if (count <= 1) {
      if (count === 1) this.changed(group, state, user, true);
      state.users.delete(user);
    } else {
      state.users.set(user, count - 1);
    }
    state.conns--;
    if (watched) state.watchers--;
    if (state.conns <= 0 && state.before === null) this.groups.delete(group);
  }

  /** A member started (+1) or stopped (-1) watching. */
  watch(group: string, delta: 1 | -1): void {
    const state = this.groups.get(group);
    if (state !== undefined) state.watchers += delta;
  }

  has(group: string): boolean {
    return this.groups.has(group);
  }

  /** The answer to `presence`: the users and their connection counts, or the totals only. */
  answer(group: string, ref: string | undefined, countsOnly: boolean): string {
    const state = this.groups.get(group);
    const users = state?.users ?? new Map<string, number>();
    const listed = countsOnly || users.size > this.options.maxList ? null : users;
    return fittingPresenceAnswer(group, ref, listed, users.size, state?.conns ?? 0, this.options.maxFrameBytes);
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private changed(group: string, state: GroupState, user: string, wasIn: boolean): void {
    state.before ??= new Map();
    if (!state.before.has(user)) state.before.set(user, wasIn);
    this.dirty.add(group);
    this.timer ??= setTimeout(() => this.flush(), this.options.windowMs);
  }

  /** The window ended: each changed group's net joins and leaves go to its watchers. */
  private flush(): void {
    this.timer = null;
    for (const group of this.dirty) {
      const state = this.groups.get(group);
      if (state === undefined || state.before === null) continue;
      const joins: string[] = [];
      const leaves: string[] = [];
      for (const [user, wasIn] of state.before) {
        const isIn = state.users.has(user);
        if (isIn && !wasIn) joins.push(user);
        else if (!isIn && wasIn) leaves.push(user);
      }
      state.before = null;
      if (state.watchers > 0) this.emit(group, joins, leaves);
      if (state.conns <= 0) this.groups.delete(group);
    }
    this.dirty.clear();
  }

  private emit(group: string, joins: string[], leaves: string[]): void {
    for (const frame of presenceEventFrames(group, joins, leaves, this.options.maxList, this.options.maxFrameBytes)) this.options.emit(group, frame);
  }
}

/**
 * The answer to `presence`, with its list of users when given and when it fits `maxBytes` (the
 * largest frame the link carries), else the totals only, as for a group over max_list: a list
 * of 1,000 long user ids passed what a small ring carries, and the answer was never sent.
 */
export function fittingPresenceAnswer(group: string, ref: string | undefined, users: ReadonlyMap<string, number> | null, totalUsers: number, totalConns: number, maxBytes: number): string {
  const answer = encodePresenceAnswer(group, ref, users, totalUsers, totalConns);
  if (users === null || Buffer.byteLength(answer) <= maxBytes) return answer;
  return encodePresenceAnswer(group, ref, null, totalUsers, totalConns);
}

/** An event's bytes beside its names: the op, the group (at most 128) and the brackets. */
const EVENT_OVERHEAD = 200;

/**
 * One window's joins and leaves of `group` as events of at most `max` names each, and of at most
 * `maxBytes`, so that a mass reconnect cannot make one frame no ring carries (also
 * cluster/presence-events.ts). Names are ASCII (NAME_PATTERN): a name's bytes are its length
 * and its quotes and comma.
 */
export function presenceEventFrames(group: string, joins: readonly string[], leaves: readonly string[], max: number, maxBytes: number): string[] {
  const frames: string[] = [];
  const room = Math.max(maxBytes - EVENT_OVERHEAD, 0);
  let j = 0;
  let l = 0;
  while (j < joins.length || l < leaves.length) {
    let names = 0;
    let bytes = 0;
    // At least one name per event, whatever its size: the loop always moves on.
    const fits = (name: string): boolean => names === 0 || (names < max && bytes + name.length + 3 <= room);
    const from = j;
    while (j < joins.length && fits(joins[j]!)) {
      bytes += joins[j++]!.length + 3;
      names++;
    }
    const leavesFrom = l;
    while (l < leaves.length && fits(leaves[l]!)) {
      bytes += leaves[l++]!.length + 3;
      names++;
    }
    frames.push(encodePresenceEvent(group, joins.slice(from, j), leaves.slice(leavesFrom, l)));
  }
  return frames;
}

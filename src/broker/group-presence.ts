/**
 * Who is in each group, over every shard: each user's connections in it, and which
 * connections watch it (joined with `presence: true`). Answers the `presence` op, and tells
 * watchers who came and went: users, not connections (a user's second tab is no news), and
 * coalesced over websocket.presence.window, so that a connection flapping in and out within it
 * makes no event at all. Fed by the broker's Presence (presence.ts), which hears every join,
 * leave and closed connection, and forgets a dead shard's connections.
 */
import { Buffer } from 'node:buffer';
import { encodePresenceEvent, presenceAnswerHead, presenceAnswerRest } from '../protocol/json-group-frames.js';
import { keptRest, PresenceAnswers, type KeptRest } from './presence-answers.js';

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
  /** Where the answers' lists are kept (a new one, under PRESENCE_ANSWER_BYTES, unless given). */
  answers?: PresenceAnswers;
}

export class GroupPresence {
  private readonly groups = new Map<string, GroupState>();
  /** Groups with changes in the current window. */
  private readonly dirty = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  /** The part of each group's answer every asker gets, until the group changes. */
  private readonly answers: PresenceAnswers;

  constructor(private readonly options: GroupPresenceOptions) {
    this.answers = options.answers ?? new PresenceAnswers();
  }

  /** A connection of `user` joined `group`; `watch`: it wants events. */
  joined(group: string, user: string, watch: boolean): void {
    let state = this.groups.get(group);
    if (state === undefined) this.groups.set(group, (state = { users: new Map(), conns: 0, watchers: 0, before: null }));
    const count = state.users.get(user) ?? 0;
    if (count === 0) this.changed(group, state, user, false);
    state.users.set(user, count + 1);
    state.conns++;
    if (watch) state.watchers++;
    this.answers.forget(group);
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
    this.answers.forget(group);
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
    if (state === undefined) return fitted(group, ref, countsOnly ? null : NO_MEMBERS, 0, 0, this.options.maxFrameBytes);
    const { users, conns } = state;
    const listed = countsOnly || users.size > this.options.maxList ? null : this.answers.rest(group, () => presenceAnswerRest(users, users.size, conns));
    return fitted(group, ref, listed, users.size, conns, this.options.maxFrameBytes);
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
      if (state.conns <= 0) {
        this.groups.delete(group);
        this.answers.forget(group);
      }
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
  return fitted(group, ref, users === null ? null : keptRest(presenceAnswerRest(users, totalUsers, totalConns)), totalUsers, totalConns, maxBytes);
}

/** fittingPresenceAnswer() of a rest built already (`listed`, null: the totals only). */
function fitted(group: string, ref: string | undefined, listed: KeptRest | null, totalUsers: number, totalConns: number, maxBytes: number): string {
  const head = presenceAnswerHead(group, ref);
  if (listed !== null && Buffer.byteLength(head) + listed.bytes <= maxBytes) return head + listed.text;
  return head + presenceAnswerRest(null, totalUsers, totalConns);
}

/** The rest of the answer about a group nobody is in. */
const NO_MEMBERS = keptRest(presenceAnswerRest(new Map(), 0, 0));

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

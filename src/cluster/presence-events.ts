/**
 * Presence events in cluster mode, on the watcher's node: the users who joined or left a group
 * anywhere in the cluster, coalesced over websocket.presence.window as on one process
 * (broker/group-presence.ts). Redis decides which changes are news (a user's first member
 * connection in the group on any node, or its last: presence-scripts.ts) and tells each node
 * with members of the group once, on the group's channel; here each node keeps, per group
 * watched by one of its connections, what changed in the current window, and at its end tells
 * the watchers the net joins and leaves (a user in and out again within it makes no event).
 *
 * Only groups with a watcher on this node are tracked, so what is kept is bounded by the users
 * that change in one window in the groups watched here.
 */
import { NAME_PATTERN } from '../protocol/frames.js';
import { presenceEventFrames } from '../broker/group-presence.js';

export interface PresenceEventsOptions {
  /** websocket.presence.max_list: the most names in one event. */
  maxList: number;
  /** websocket.presence.window, in ms. */
  windowMs: number;
  /** The largest frame the link to the shards carries. */
  maxFrameBytes: number;
  /** Publishes an event frame to the watchers of `group` on this node's shards. */
  emit(group: string, frame: string): void;
}

/** Whether a user was in the group when the window began, and whether it is now. */
interface Change {
  wasIn: boolean;
  isIn: boolean;
}

export class PresenceEvents {
  /** Group -> this node's connections watching it. */
  private readonly watchers = new Map<string, number>();
  /** Watched groups with changes in the current window: user -> its change. */
  private readonly changes = new Map<string, Map<string, Change>>();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly options: PresenceEventsOptions) {}

  /** A connection here started (+1) or stopped (-1) watching `group`. */
  watch(group: string, delta: 1 | -1): void {
    const count = (this.watchers.get(group) ?? 0) + delta;
    if (count > 0) this.watchers.set(group, count);
    else this.watchers.delete(group);
  }

  /**
   * A presence record from the group's channel: "+user" and "-user" entries, "\n"-separated
   * (the bytes after the 0xff mark). False: malformed (not ours, or another version).
   */
  received(group: string, record: string): boolean {
    if (!this.watchers.has(group)) return true; // nobody here asked
    const entries = record.split('\n');
    for (const entry of entries) {
      const sign = entry[0];
      if ((sign !== '+' && sign !== '-') || !NAME_PATTERN.test(entry.slice(1))) return false;
    }
    for (const entry of entries) this.changed(group, entry.slice(1), entry[0] === '+');
    return true;
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private changed(group: string, user: string, joined: boolean): void {
    let users = this.changes.get(group);
    if (users === undefined) this.changes.set(group, (users = new Map()));
    const change = users.get(user);
    // Redis tells one user's joins and leaves alternately: the first of the window says where it started.
    if (change === undefined) users.set(user, { wasIn: !joined, isIn: joined });
    else change.isIn = joined;
    this.timer ??= setTimeout(() => this.flush(), this.options.windowMs);
  }

  /** The window ended: each changed group's net joins and leaves go to its watchers here. */
  private flush(): void {
    this.timer = null;
    for (const [group, users] of this.changes) {
      if (!this.watchers.has(group)) continue; // its last watcher left during the window
      const joins: string[] = [];
      const leaves: string[] = [];
      for (const [user, { wasIn, isIn }] of users) {
        if (isIn && !wasIn) joins.push(user);
        else if (!isIn && wasIn) leaves.push(user);
      }
      for (const frame of presenceEventFrames(group, joins, leaves, this.options.maxList, this.options.maxFrameBytes)) this.options.emit(group, frame);
    }
    this.changes.clear();
  }
}

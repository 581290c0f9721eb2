/**
 * Who is connected where: every authenticated connection by sid, each user's connections (a
 * `send` goes to all of them, on every shard), and each group's members (an `any` goes to one,
 * picked by the group's strategy). Every change of membership is also told to the group
 * presence (group-presence.ts: the `presence` op and events).
 */
import type { Config } from '../config/schema.js';
import type { AnyStrategy } from '../protocol/frames.js';
import { GroupMembers, type Member } from './any-strategies.js';
import type { GroupPresence } from './group-presence.js';
import { MarkedMemberships } from './marked-memberships.js';

export interface Conn extends Member {
  shard: number;
  groups: Set<string>;
  /** Groups whose presence events it asked for (null: none). */
  watching: Set<string> | null;
}

/** Why a new connection of `user`, who holds `held` already, is refused (limits.max_connections_per_user; 0: no cap), or null. */
export function connectionCapRefusal(user: string, held: number, max: number, where = ''): string | null {
  return max > 0 && held >= max ? `${user} holds ${held} connections already${where} (websocket.limits.max_connections_per_user)` : null;
}

export class Presence {
  private readonly conns = new Map<string, Conn>();
  private readonly users = new Map<string, Map<string, Conn>>();
  private readonly groups = new Map<string, GroupMembers<Conn>>();
  private readonly strategies: Map<string, AnyStrategy>;
  /** Delivery's blocked groups, and each user's of them (marked-memberships.ts). */
  private readonly marks = new MarkedMemberships();

  constructor(
    private readonly delivery: Config['websocket']['delivery'],
    private readonly groupPresence: Pick<GroupPresence, 'joined' | 'left' | 'watch'> | null = null,
    /** The last member of `group` left (delivery forgets it was blocked: nothing would pump it again). */
    private readonly emptied: (group: string) => void = () => {},
  ) {
    // A copy: setStrategy() adds to it, the config stays as loaded.
    this.strategies = new Map(delivery.group_strategies);
  }

  /** Registers connection `sid` of `user` on `shard`, weighted for `any` as the config says. */
  online(sid: string, user: string, shard: number): Conn {
    const conn: Conn = { sid, user, shard, weight: 1, groups: new Set(), watching: null };
    this.conns.set(sid, conn);
    let conns = this.users.get(user);
    if (!conns) this.users.set(user, (conns = new Map()));
    conns.set(sid, conn);
    conn.weight = this.delivery.weights.get(user) ?? 1;
    return conn;
  }

  /** The user of connection `sid`, while it is online. */
  userOf(sid: string): string | undefined {
    return this.conns.get(sid)?.user;
  }

  offline(sid: string): void {
    const conn = this.conns.get(sid);
    if (!conn) return;
    this.conns.delete(sid);
    const conns = this.users.get(conn.user);
    conns?.delete(sid);
    if (conns && conns.size === 0) this.users.delete(conn.user);
    for (const group of conn.groups) this.leaveGroup(group, conn);
  }

  /** Every connection on `shard` goes offline (the shard died). */
  forgetShard(shard: number): void {
    for (const conn of [...this.conns.values()]) if (conn.shard === shard) this.offline(conn.sid);
  }

  /**
   * Connection `sid` joined `group`, with the token's `weight` claim (0: none, keep the
   * configured one), watching its presence events or not (a member's new join decides). False
   * when the connection is unknown (it closed meanwhile).
   */
  join(sid: string, group: string, weight: number, watch = false): boolean {
    const conn = this.conns.get(sid);
    if (!conn) return false;
    if (weight > 0) conn.weight = weight;
    if (conn.groups.has(group)) {
      this.setWatching(conn, group, watch);
      return true;
    }
    conn.groups.add(group);
    let members = this.groups.get(group);
    if (!members) this.groups.set(group, (members = new GroupMembers()));
    members.add(conn);
    this.marks.joined(group, conn.user, () => this.groupsOf(conn.user));
    if (watch) (conn.watching ??= new Set()).add(group);
    this.groupPresence?.joined(group, conn.user, watch);
    return true;
  }

  leave(sid: string, group: string): void {
    const conn = this.conns.get(sid);
    if (!conn || !conn.groups.delete(group)) return;
    this.leaveGroup(group, conn);
  }

  /** Whether any connection is a member of `group` now (an `any` for it would go out; history forgets such a group last). */
  hasMembers(group: string): boolean {
    return this.groups.has(group);
  }

  /** The connections of `user`, by sid; undefined when it has none. */
  connectionsOf(user: string): ReadonlyMap<string, Conn> | undefined {
    return this.users.get(user);
  }

  /** Marks `group` (blocked, for delivery): from now on markedGroupsOf() finds it for each of its members' users. */
  mark(group: string): void {
    this.marks.mark(group, this.groups.get(group)?.all() ?? []);
  }

  unmark(group: string): void {
    this.marks.unmark(group, this.groups.get(group)?.all() ?? []);
  }

  /** The marked groups `user` is a member of (may repeat), without a walk of its groups when it has many. */
  markedGroupsOf(user: string): Iterable<string> {
    return this.marks.of(user, () => this.groupsOf(user));
  }

  setStrategy(group: string, strategy: AnyStrategy): void {
    this.strategies.set(group, strategy);
  }

  /** The member of `group` that gets the next `any`: by `strategy`, else the group's, else the default, among those `eligible` takes. Null when none is. */
  pick(group: string, strategy: AnyStrategy | null, inflightOf: (user: string) => number, eligible?: (member: Conn) => boolean): Conn | null {
    const members = this.groups.get(group);
    return members?.pick(strategy ?? this.strategies.get(group) ?? this.delivery.default_strategy, inflightOf, eligible) ?? null;
  }

  /** The groups of each of `user`'s connections. */
  private *groupsOf(user: string): IterableIterator<string> {
    for (const conn of this.users.get(user)?.values() ?? []) yield* conn.groups;
  }

  private leaveGroup(group: string, conn: Conn): void {
    const members = this.groups.get(group);
    if (!members) return;
    members.delete(conn.sid);
    this.marks.left(group, conn.user);
    if (members.size === 0) {
      this.groups.delete(group);
      this.emptied(group);
    }
    this.groupPresence?.left(group, conn.user, conn.watching?.delete(group) ?? false);
  }

  private setWatching(conn: Conn, group: string, watch: boolean): void {
    const was = conn.watching?.has(group) ?? false;
    if (was === watch) return;
    if (watch) (conn.watching ??= new Set()).add(group);
    else conn.watching!.delete(group);
    this.groupPresence?.watch(group, watch ? 1 : -1);
  }
}

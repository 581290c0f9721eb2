/**
 * Some groups marked (delivery's blocked ones, group-turns.ts), and which of them a user is a
 * member of: a window that frees is offered to its user's blocked groups, and finding them
 * walked every group of every connection of the user (30,000 look-ups per ack for a user in
 * 30,000 groups, however few were blocked). Kept by Presence, which hears every join and leave.
 *
 * Only users in at least INDEXED groups are indexed (their marked groups, by how many of their
 * connections are in each); the others' few groups are walked. Indexing every member cost a
 * marking of a group of 10,000 about 12 ms (a map per user), against 0.02-0.3 ms for the pick
 * that found none of them with room. A user stays indexed until it is in no group.
 */
const INDEXED = 256;

export class MarkedMemberships {
  private readonly marked = new Set<string>();
  /** User → the groups its connections are in, counted once per connection. */
  private readonly memberships = new Map<string, number>();
  /** Indexed user → its marked groups → its connections in each. */
  private readonly byUser = new Map<string, Map<string, number>>();

  /** `group` is marked, with its `members` now (their users, one per connection). */
  mark(group: string, members: Iterable<{ user: string }>): void {
    if (this.marked.has(group)) return;
    this.marked.add(group);
    // Most often nobody is indexed: a group of 10,000 members is not walked for nothing.
    if (this.byUser.size > 0) for (const member of members) this.count(this.byUser.get(member.user), group, 1);
  }

  unmark(group: string, members: Iterable<{ user: string }>): void {
    if (!this.marked.delete(group) || this.byUser.size === 0) return;
    for (const member of members) this.byUser.get(member.user)?.delete(group);
  }

  /** A connection of `user` joined `group`, now among `groupsOf()` (its connections' groups, with each connection's). */
  joined(group: string, user: string, groupsOf: () => Iterable<string>): void {
    const memberships = (this.memberships.get(user) ?? 0) + 1;
    this.memberships.set(user, memberships);
    const groups = this.byUser.get(user);
    if (groups !== undefined) return this.count(groups, group, 1);
    if (memberships < INDEXED) return;
    const index = new Map<string, number>();
    this.byUser.set(user, index);
    for (const of of groupsOf()) this.count(index, of, 1);
  }

  /** A connection of `user` left `group` (or closed). */
  left(group: string, user: string): void {
    const memberships = (this.memberships.get(user) ?? 1) - 1;
    if (memberships > 0) {
      this.memberships.set(user, memberships);
      this.count(this.byUser.get(user), group, -1);
    } else {
      this.memberships.delete(user);
      this.byUser.delete(user);
    }
  }

  /** The marked groups `user` is a member of (an unindexed user's may repeat: one per connection in it). */
  of(user: string, groupsOf: () => Iterable<string>): Iterable<string> {
    // The index's own iterator: a generator over it made an ack of a user in 30,000 blocked groups cost twice as much.
    return this.byUser.get(user)?.keys() ?? this.markedAmong(groupsOf());
  }

  private *markedAmong(groups: Iterable<string>): IterableIterator<string> {
    for (const group of groups) if (this.marked.has(group)) yield group;
  }

  /** Adds `delta` to `group`'s count in `groups` (a user's index) when it is marked, dropping it at 0. */
  private count(groups: Map<string, number> | undefined, group: string, delta: 1 | -1): void {
    if (groups === undefined || !this.marked.has(group)) return;
    const count = (groups.get(group) ?? 0) + delta;
    if (count > 0) groups.set(group, count);
    else groups.delete(group);
  }
}

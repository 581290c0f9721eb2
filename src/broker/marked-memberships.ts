/**
 * Some groups marked (delivery's blocked ones, group-turns.ts), and for each user the marked
 * groups it is a member of, by how many of its connections: a window that frees is offered to
 * its user's blocked groups, and finding them walked every group of every connection of the
 * user (30,000 look-ups per ack for a user in 30,000 groups, however few were blocked). Kept
 * by Presence, which hears every join and leave; a user's entry goes once it is in no marked
 * group, a group's entries once it is unmarked.
 */
export class MarkedMemberships {
  private readonly marked = new Set<string>();
  /** User → its marked groups → its connections in each. */
  private readonly byUser = new Map<string, Map<string, number>>();

  /** `group` is marked, with its `members` now (their users, one per connection). */
  mark(group: string, members: Iterable<{ user: string }>): void {
    if (this.marked.has(group)) return;
    this.marked.add(group);
    for (const member of members) this.joined(group, member.user);
  }

  unmark(group: string, members: Iterable<{ user: string }>): void {
    if (!this.marked.has(group)) return;
    this.marked.delete(group);
    for (const member of members) this.forget(member.user, group);
  }

  /** A connection of `user` joined `group`. */
  joined(group: string, user: string): void {
    if (!this.marked.has(group)) return;
    let groups = this.byUser.get(user);
    if (groups === undefined) this.byUser.set(user, (groups = new Map()));
    groups.set(group, (groups.get(group) ?? 0) + 1);
  }

  /** A connection of `user` left `group` (or closed). */
  left(group: string, user: string): void {
    const groups = this.byUser.get(user);
    const count = groups?.get(group);
    if (groups === undefined || count === undefined) return;
    if (count > 1) groups.set(group, count - 1);
    else this.forget(user, group);
  }

  /** The marked groups `user` is a member of. */
  of(user: string): Iterable<string> {
    return this.byUser.get(user)?.keys() ?? [];
  }

  /** Users with an entry (for the tests: the index holds no more than it must). */
  get users(): number {
    return this.byUser.size;
  }

  private forget(user: string, group: string): void {
    const groups = this.byUser.get(user);
    if (groups?.delete(group) && groups.size === 0) this.byUser.delete(user);
  }
}

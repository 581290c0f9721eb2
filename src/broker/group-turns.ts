/**
 * The groups with `any` messages waiting for a member whose user's window has room, in turns:
 * a freed window serves them in the order they were blocked, and one that got some and is
 * still blocked goes to the back, so that a group that always has more cannot take every slot
 * its members free from the others (delivery.ts). Each holds its turn, a number that grows with
 * each (re)queueing, and the map stays in that order: a turn that frees few of them sorts just
 * those (copying the whole set made every ack cost 30,000 entries with 30,000 groups blocked),
 * one that frees many walks the map (cheaper than a sort). Each group blocked is marked in
 * `marks` (Presence) while it is, which finds a user's of them without a walk of its groups.
 */
export class GroupTurns {
  private readonly turns = new Map<string, number>();
  private lastTurn = 0;

  constructor(private readonly marks: { mark(group: string): void; unmark(group: string): void }) {}

  get size(): number {
    return this.turns.size;
  }

  has(group: string): boolean {
    return this.turns.has(group);
  }

  /** `group` waits for a member's window: at the back of the turns, unless it waits already. */
  block(group: string): void {
    if (this.turns.has(group)) return;
    this.turns.set(group, ++this.lastTurn);
    this.marks.mark(group);
  }

  /** `group` got some and waits still: to the back. */
  toBack(group: string): void {
    if (this.turns.delete(group)) this.turns.set(group, ++this.lastTurn);
  }

  unblock(group: string): void {
    if (this.turns.delete(group)) this.marks.unmark(group);
  }

  /** The blocked of `groups` in their turn order; sorting costs more per group than a walk of the blocked (measured: even at a tenth of them). */
  inTurn(groups: ReadonlySet<string>): string[] {
    const turns = this.turns;
    if (groups.size * 16 > turns.size) return [...turns.keys()].filter((group) => groups.has(group));
    return [...groups].filter((group) => turns.has(group)).sort((a, b) => turns.get(a)! - turns.get(b)!);
  }
}

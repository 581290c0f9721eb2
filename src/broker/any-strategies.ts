/**
 * How `any` picks the one member connection that gets a message.
 * - round_robin: members in turn.
 * - least_connections: the member whose user has the fewest deliveries awaiting ack, among the
 *   next LEAST_CONNECTIONS_SAMPLE eligible members in turn (all of them in a smaller group: a
 *   pick then costs the same in a group of 20,000, where comparing all cost 0.3 ms at 2,000);
 *   ties rotate, so equal members share the load.
 * - weighted: smooth weighted round robin (nginx's): over any window, each member gets its
 *   weight's share, interleaved rather than in runs, and the sequence is deterministic.
 */
import type { AnyStrategy } from '../protocol/frames.js';

const everyone = (): boolean => true;

/** How many eligible members a least_connections pick compares (cluster mode's too: route-any-script.ts). */
export const LEAST_CONNECTIONS_SAMPLE = 16;

export interface Member {
  sid: string;
  user: string;
  weight: number;
}

/** A member in a group: its running weight for the smooth weighted pick lives beside it (a map of them cost two lookups per member per pick). */
interface Slot<M> {
  member: M;
  current: number;
  /** Its place in the rotation (GroupMembers.ordered); -1 once it left (kept until the holes close). */
  index: number;
}

export class GroupMembers<M extends Member> {
  /**
   * Members that left stay here until the holes close: a connection joining and leaving in a
   * loop made V8 walk the tombstones its one key left in a large Map (about 15 µs a join and
   * leave in a group of 10,000).
   */
  private readonly slots = new Map<string, Slot<M>>();
  private members = 0;
  private turn = 0;
  /**
   * The members in rotation order, joins at the end; one that leaves leaves a hole (null), and
   * the holes are closed once there are more of them than members. Rebuilt at the first pick
   * after each join or leave, a group of 10,000 with a member joining and leaving in a loop
   * made every `any` cost a copy of it (5,000 picks, each after a join and a leave: 272-696 ms,
   * against 1-24 ms without; test/any-strategies.test.ts).
   */
  private readonly ordered: Array<Slot<M> | null> = [];
  private holes = 0;

  add(member: M): void {
    let slot = this.slots.get(member.sid);
    if (slot?.index === -1) {
      // Back after leaving: at the end, from zero, as a new member.
      slot.current = 0;
    } else if (slot === undefined) {
      this.slots.set(member.sid, (slot = { member, current: 0, index: -1 }));
    }
    slot.member = member;
    if (slot.index !== -1) return;
    slot.index = this.ordered.length;
    this.ordered.push(slot);
    this.members++;
  }

  delete(sid: string): void {
    const slot = this.slots.get(sid);
    if (slot === undefined || slot.index === -1) return;
    this.ordered[slot.index] = null;
    slot.index = -1;
    this.members--;
    if (++this.holes > this.members) this.closeHoles();
  }

  get size(): number {
    return this.members;
  }

  /** The members, in rotation order. */
  *all(): IterableIterator<M> {
    for (const slot of this.ordered) if (slot !== null) yield slot.member;
  }

  /** Closes the holes, keeping the order and the turn on the member whose turn it was (or the next), and forgets who left. */
  private closeHoles(): void {
    const ordered = this.ordered;
    const turn = ordered.length === 0 ? 0 : this.turn % ordered.length;
    let live = 0;
    for (let i = 0; i < ordered.length; i++) {
      if (i === turn) this.turn = live;
      const slot = ordered[i];
      if (!slot) continue;
      slot.index = live;
      ordered[live++] = slot;
    }
    ordered.length = live;
    this.holes = 0;
    for (const [sid, slot] of this.slots) if (slot.index === -1) this.slots.delete(sid);
  }

  /** The member that gets the next message, among those `eligible` takes (a user's window with room); null when none is. */
  pick(strategy: AnyStrategy, inflightOf: (user: string) => number, eligible: (member: M) => boolean = everyone): M | null {
    if (this.members === 0) return null;
    const ordered = this.ordered;
    const size = ordered.length;
    if (strategy === 'weighted') {
      const picked = this.weighted(ordered, eligible);
      if (picked !== null) return picked;
    }
    const start = this.turn % size;
    this.turn = start + 1;
    let best: M | null = null;
    let bestLoad = Infinity;
    let compared = 0;
    // Visit members from `start` round the ring: round_robin (and weighted, when its sums failed) takes the first, least_connections the least loaded.
    for (let n = 0; n < size; n++) {
      const slot = ordered[(start + n) % size];
      if (!slot) continue;
      const member = slot.member;
      if (!eligible(member)) continue;
      if (strategy !== 'least_connections') {
        // The next turn starts after this one: members passed over (no room) do not hand theirs to it twice.
        this.turn = start + n + 1;
        return member;
      }
      const load = inflightOf(member.user);
      if (load < bestLoad) {
        best = member;
        bestLoad = load;
      }
      if (++compared === LEAST_CONNECTIONS_SAMPLE) break;
    }
    return best;
  }

  /**
   * The smooth weighted pick, or null (the caller takes turns instead) when the weights or
   * their running sums are not finite numbers: Infinity and NaN would never be picked again.
   * The config and token checks keep weights far below that (MAX_WEIGHT); this is the backstop.
   */
  private weighted(ordered: ReadonlyArray<Slot<M> | null>, eligible: (member: M) => boolean): M | null {
    let total = 0;
    let best: Slot<M> | null = null;
    let bestWeight = -Infinity;
    let finite = true;
    // Members not eligible now sit this round out, as nginx skips a peer that is down.
    for (let i = 0; i < ordered.length; i++) {
      const slot = ordered[i];
      if (!slot || !eligible(slot.member)) continue;
      const weight = (slot.current += slot.member.weight);
      finite &&= Number.isFinite(weight);
      total += slot.member.weight;
      if (weight > bestWeight) {
        best = slot;
        bestWeight = weight;
      }
    }
    if (best === null) return null;
    if (!finite || !Number.isFinite(bestWeight - total)) {
      for (const slot of ordered) if (slot !== null) slot.current = 0;
      return null;
    }
    best.current = bestWeight - total;
    return best.member;
  }
}

/**
 * Ack deadlines of in-flight deliveries, without stale entries piling up: one intrusive
 * doubly-linked list per attempt number. Every delivery of attempt n waits the same time, so
 * each list is in deadline order by appending at the tail (expire from the head),
 * and an ack unlinks its entry in O(1). A heap with lazy deletion would instead keep every
 * acknowledged delivery until its deadline passed: rate x ack_timeout dead nodes (200 000 at
 * 20 000/s and 10 s), which the garbage collector then has to walk.
 */
export interface Timed {
  deadline: number;
  prev: Timed | null;
  next: Timed | null;
  /** The list holding this item, or -1. */
  list: number;
}

export class DeadlineLists<T extends Timed> {
  private readonly heads: Array<T | null> = [];
  private readonly tails: Array<T | null> = [];
  /** The item each list was last given: where the next search for a place starts. */
  private readonly lastAdded: Array<T | null> = [];

  /**
   * Puts `item` in list `list` at its deadline's place: the tail, in O(1), for every item but
   * those a take-over restores (messages that began waiting before the live ones did). Those
   * come oldest first, each going after the one before: the search starts there, so a run of
   * them costs O(1) each too.
   */
  add(item: T, list: number, deadline: number): void {
    this.remove(item);
    while (this.heads.length <= list) {
      this.heads.push(null);
      this.tails.push(null);
      this.lastAdded.push(null);
    }
    item.deadline = deadline;
    item.list = list;
    const last = this.lastAdded[list];
    let before: T | null;
    // Not `item` itself, just given its list and deadline: a delivery put back in the list it left.
    if (last && last !== item && last.list === list && last.deadline <= deadline) {
      before = last;
      while (before.next !== null && before.next.deadline <= deadline) before = before.next as T;
    } else {
      before = this.tails[list]!;
      while (before !== null && before.deadline > deadline) before = before.prev as T | null;
    }
    this.lastAdded[list] = item;
    item.prev = before;
    item.next = before === null ? this.heads[list]! : before.next;
    if (before === null) this.heads[list] = item;
    else before.next = item;
    if (item.next === null) this.tails[list] = item;
    else item.next.prev = item;
  }

  remove(item: T): void {
    if (item.list < 0) return;
    const list = item.list;
    if (item.prev) item.prev.next = item.next;
    else this.heads[list] = item.next as T | null;
    if (item.next) item.next.prev = item.prev;
    else this.tails[list] = item.prev as T | null;
    item.prev = item.next = null;
    item.list = -1;
  }

  /** The earliest deadline of any item, or Infinity when none waits. */
  nextDeadline(): number {
    let next = Infinity;
    for (const head of this.heads) if (head && head.deadline < next) next = head.deadline;
    return next;
  }

  /** Removes and returns the items (at most `limit`) of lists [from, to) whose deadline is at or before `now`. */
  takeDue(now: number, from = 0, to = this.heads.length, limit = Infinity): T[] {
    const due: T[] = [];
    for (let list = from; list < Math.min(to, this.heads.length); list++) {
      for (let item = this.heads[list]; item && item.deadline <= now && due.length < limit; item = this.heads[list]) {
        this.remove(item);
        due.push(item);
      }
    }
    return due;
  }
}

/**
 * Ack deadlines of in-flight deliveries, without stale entries piling up: one intrusive
 * doubly-linked list per attempt number. Every delivery of attempt n waits the same time, so
 * each list is in deadline order by construction (append at the tail, expire from the head),
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

  /** Appends `item` to list `list` (its deadline must not be earlier than that list's tail). */
  add(item: T, list: number, deadline: number): void {
    this.remove(item);
    while (this.heads.length <= list) {
      this.heads.push(null);
      this.tails.push(null);
    }
    item.deadline = deadline;
    item.list = list;
    item.next = null;
    item.prev = this.tails[list]!;
    if (item.prev) item.prev.next = item;
    else this.heads[list] = item;
    this.tails[list] = item;
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

  /** Removes and returns every item of lists [from, to) whose deadline is at or before `now`. */
  takeDue(now: number, from = 0, to = this.heads.length): T[] {
    const due: T[] = [];
    for (let list = from; list < Math.min(to, this.heads.length); list++) {
      for (let item = this.heads[list]; item && item.deadline <= now; item = this.heads[list]) {
        this.remove(item);
        due.push(item);
      }
    }
    return due;
  }
}

/**
 * A binary min-heap of timed items that know their place in it: the broker's scheduled sends
 * and the cluster's sweep times. Knowing its index, an item leaves in O(log n) when it is
 * removed (a scheduled send dead-lettered or evicted before its time); with lazy deletion a
 * sender could fill the heap with far-future sends that the store had long let go of.
 */
export interface HeapItem {
  /** When the item is due, epoch ms. */
  heapTime: number;
  /** Its index in the heap, or -1 while in none. */
  heapIndex: number;
}

export class TimerHeap<T extends HeapItem> {
  private readonly nodes: T[] = [];

  get size(): number {
    return this.nodes.length;
  }

  /** Adds `item`, due at `time`; an item already in the heap moves to its new time. */
  push(item: T, time: number): void {
    this.remove(item);
    item.heapTime = time;
    item.heapIndex = this.nodes.length;
    this.nodes.push(item);
    this.up(item.heapIndex);
  }

  /** Takes `item` out; nothing when it is in no heap. */
  remove(item: T): void {
    const i = item.heapIndex;
    if (i < 0 || this.nodes[i] !== item) return;
    item.heapIndex = -1;
    const last = this.nodes.pop()!;
    if (i === this.nodes.length) return;
    this.nodes[i] = last;
    last.heapIndex = i;
    this.down(i);
    this.up(last.heapIndex);
  }

  /** The earliest time in the heap, or Infinity when it is empty. */
  nextTime(): number {
    return this.nodes.length === 0 ? Infinity : this.nodes[0]!.heapTime;
  }

  /** The earliest item due at or before `now`, removed; undefined when none is due. */
  popDue(now: number): T | undefined {
    const top = this.nodes[0];
    if (top === undefined || top.heapTime > now) return undefined;
    this.remove(top);
    return top;
  }

  private up(i: number): void {
    const nodes = this.nodes;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (nodes[parent]!.heapTime <= nodes[i]!.heapTime) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  private down(i: number): void {
    const nodes = this.nodes;
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let smallest = i;
      if (left < nodes.length && nodes[left]!.heapTime < nodes[smallest]!.heapTime) smallest = left;
      if (right < nodes.length && nodes[right]!.heapTime < nodes[smallest]!.heapTime) smallest = right;
      if (smallest === i) return;
      this.swap(i, smallest);
      i = smallest;
    }
  }

  private swap(a: number, b: number): void {
    const nodes = this.nodes;
    const item = nodes[a]!;
    nodes[a] = nodes[b]!;
    nodes[b] = item;
    nodes[a]!.heapIndex = a;
    item.heapIndex = b;
  }
}

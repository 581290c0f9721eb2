/** A binary min-heap of timed items: the broker's redelivery deadlines and scheduled sends. */
export interface Timed<T> {
  time: number;
  item: T;
  /** A stamp the owner compares to decide whether the item is still current (lazy deletion). */
  stamp: number;
}

export class TimerHeap<T> {
  private readonly nodes: Timed<T>[] = [];

  get size(): number {
    return this.nodes.length;
  }

  push(time: number, item: T, stamp: number): void {
    const nodes = this.nodes;
    nodes.push({ time, item, stamp });
    let i = nodes.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (nodes[parent]!.time <= nodes[i]!.time) break;
      [nodes[parent], nodes[i]] = [nodes[i]!, nodes[parent]!];
      i = parent;
    }
  }

  /** The earliest time in the heap, or Infinity when it is empty. */
  nextTime(): number {
    return this.nodes.length === 0 ? Infinity : this.nodes[0]!.time;
  }

  /** The earliest item due at or before `now`, removed; undefined when none is due. */
  popDue(now: number): Timed<T> | undefined {
    const nodes = this.nodes;
    if (nodes.length === 0 || nodes[0]!.time > now) return undefined;
    const top = nodes[0]!;
    const last = nodes.pop()!;
    if (nodes.length > 0) {
      nodes[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let smallest = i;
        if (left < nodes.length && nodes[left]!.time < nodes[smallest]!.time) smallest = left;
        if (right < nodes.length && nodes[right]!.time < nodes[smallest]!.time) smallest = right;
        if (smallest === i) break;
        [nodes[smallest], nodes[i]] = [nodes[i]!, nodes[smallest]!];
        i = smallest;
      }
    }
    return top;
  }
}

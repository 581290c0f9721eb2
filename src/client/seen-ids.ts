/**
 * The message ids seen lately, to drop a message delivered twice (a stored message redelivered
 * because its `ack` was lost with the connection, a replay that overlaps). Bounded: the oldest
 * id is forgotten when `capacity` newer ones have arrived. Server ids never repeat, so a window
 * larger than what one reconnect can replay is enough.
 */
export class SeenIds {
  /** Each id seen, with its slot in the ring. */
  private readonly slots = new Map<string, number>();
  private readonly ring: Array<string | undefined>;
  private next = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('capacity must be a positive integer');
    this.ring = new Array<string | undefined>(capacity);
  }

  has(id: string): boolean {
    return this.slots.has(id);
  }

  /** Records `id`; false when it was already there. */
  add(id: string): boolean {
    if (this.slots.has(id)) return false;
    const old = this.ring[this.next];
    if (old !== undefined) this.slots.delete(old);
    this.ring[this.next] = id;
    this.slots.set(id, this.next);
    this.next = this.next + 1 === this.capacity ? 0 : this.next + 1;
    return true;
  }

  /**
   * Forgets `id` (a handler failed on it: let its redelivery through). Its slot is emptied:
   * left holding the id, it would forget the id's next record early when the ring came round.
   */
  delete(id: string): void {
    const slot = this.slots.get(id);
    if (slot === undefined) return;
    this.slots.delete(id);
    this.ring[slot] = undefined;
  }

  get size(): number {
    return this.slots.size;
  }
}

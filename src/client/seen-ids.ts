/**
 * The message ids seen lately, to drop a message delivered twice (a stored message redelivered
 * because its `ack` was lost with the connection, a replay that overlaps). Bounded: the oldest
 * id is forgotten when `capacity` newer ones have arrived. Server ids never repeat, so a window
 * larger than what one reconnect can replay is enough.
 */
export class SeenIds {
  private readonly set = new Set<string>();
  private readonly ring: Array<string | undefined>;
  private next = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('capacity must be a positive integer');
    this.ring = new Array<string | undefined>(capacity);
  }

  has(id: string): boolean {
    return this.set.has(id);
  }

  /** Records `id`; false when it was already there. */
  add(id: string): boolean {
    if (this.set.has(id)) return false;
    const old = this.ring[this.next];
    if (old !== undefined) this.set.delete(old);
    this.ring[this.next] = id;
    this.next = this.next + 1 === this.capacity ? 0 : this.next + 1;
    this.set.add(id);
    return true;
  }

  /** Forgets `id` (a handler failed on it: let its redelivery through). */
  delete(id: string): void {
    // The ring slot stays; deleting a missing id from the set later is harmless.
    this.set.delete(id);
  }

  get size(): number {
    return this.set.size;
  }
}

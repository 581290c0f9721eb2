/**
 * A doorbell per consumer thread: one Int32 counter the producers bump after publishing to
 * any ring bound for that thread, plus a "sleeping" flag so that producers pay for
 * Atomics.notify only when the consumer is actually parked.
 *
 * Layout: Int32Array, two slots per thread: [RING, SLEEPING].
 * Why no lost wake-up: the consumer sets SLEEPING, reads RING, drains its rings, then waits
 * for RING to change from the value it read. A record published before that read is seen by
 * the drain; one published after it changes RING, so the wait returns at once or is notified
 * (the producer's bump comes after SLEEPING was set, so it sees the flag).
 */
const SLOTS = 2;
const RING = 0;
const SLEEPING = 1;

export function createDoorbells(threads: number): SharedArrayBuffer {
  return new SharedArrayBuffer(threads * SLOTS * 4);
}

/** Producer side: ring the bell of thread `target` after publishing a record to it. */
export class DoorbellRinger {
  private readonly cells: Int32Array;
  constructor(buffer: SharedArrayBuffer) {
    this.cells = new Int32Array(buffer);
  }
  ring(target: number): void {
    const base = target * SLOTS;
    Atomics.add(this.cells, base + RING, 1);
    if (Atomics.load(this.cells, base + SLEEPING) === 1) Atomics.notify(this.cells, base + RING, 1);
  }
}

/**
 * Consumer side: calls `drain` whenever a producer rang, and sleeps in between without a
 * polling loop. `drain` returns true when it stopped at its budget with records left. The pending Atomics.waitAsync does not keep the thread alive on its own;
 * the uWS App does, and stop() lets the thread exit.
 */
export class DoorbellListener {
  private readonly cells: Int32Array;
  private readonly base: number;
  private stopped = false;
  private readonly wake = (): void => this.cycle();

  constructor(buffer: SharedArrayBuffer, self: number, private readonly drain: () => boolean) {
    this.cells = new Int32Array(buffer);
    this.base = self * SLOTS;
  }

  start(): void {
    this.cycle();
  }

  /**
   * Stops listening and wakes our own pending wait: a waiter left behind by a thread that
   * exits can be picked by a later notify on the same cell (its replacement's bell) and
   * crash the process.
   */
  stop(): void {
    this.stopped = true;
    Atomics.store(this.cells, this.base + SLEEPING, 0);
    Atomics.add(this.cells, this.base + RING, 1);
    Atomics.notify(this.cells, this.base + RING);
  }

  private cycle(): void {
    if (this.stopped) return;
    // Drain awake first, so producers skip the notify while we are busy anyway.
    Atomics.store(this.cells, this.base + SLEEPING, 0);
    if (this.drain()) {
      setImmediate(this.wake); // budget spent with more to read: let I/O run, then go on
      return;
    }
    Atomics.store(this.cells, this.base + SLEEPING, 1);
    const seen = Atomics.load(this.cells, this.base + RING);
    if (this.drain()) {
      setImmediate(this.wake);
      return;
    }
    const result = Atomics.waitAsync(this.cells, this.base + RING, seen);
    if (result.async) void result.value.then(this.wake);
    else setImmediate(this.wake); // the bell rang while we drained
  }
}

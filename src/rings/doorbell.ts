/**
 * A doorbell per consumer thread: one Int32 counter the producers bump after publishing to
 * any ring bound for that thread, plus a "sleeping" flag so that producers pay for
 * Atomics.notify only when the consumer is actually parked.
 *
 * Layout: Int32Array, two slots per thread: [RING, SLEEPING].
 * The consumer waits on SLEEPING itself (the futex word): it sets SLEEPING, drains its rings,
 * then waits while SLEEPING is still set. The first producer to clear it (compareExchange
 * 1 -> 0) notifies; the others see it clear and skip. Why no lost wake-up: a record the last
 * drain missed was published after that drain began, so after SLEEPING was set; its producer
 * then clears SLEEPING (or finds it cleared by another producer, which notifies), and the
 * wait either returns at once (SLEEPING no longer 1) or is woken.
 * Why the exchange and not a plain load: with a load, every record written between the
 * consumer's notify and its waking up notified again; at 5,000 durable sends a second that
 * was about 6 notifies in 7 (128,000 against 20,000 in a run), each a mutex and a task posted
 * to the consumer's isolate.
 * RING counts the records rung for (a diagnostic: /health does not read it).
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
    if (Atomics.compareExchange(this.cells, base + SLEEPING, 1, 0) === 1) Atomics.notify(this.cells, base + SLEEPING, 1);
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
    Atomics.notify(this.cells, this.base + SLEEPING);
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
    if (this.drain()) {
      setImmediate(this.wake);
      return;
    }
    const result = Atomics.waitAsync(this.cells, this.base + SLEEPING, 1);
    if (result.async) void result.value.then(this.wake);
    else setImmediate(this.wake); // a producer rang (cleared SLEEPING) while we drained
  }
}

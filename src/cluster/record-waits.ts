/**
 * Hand-outs held until the delivery records of some messages reach this node, or a bound
 * passes. A PUMP's reply comes over the node's command connection, another node's record of a
 * message it routed just before over the subscriber connection, once that node had its route's
 * reply: with the user's window filled between the two, what the PUMP claimed overtook the older
 * message (window-scripts.ts PUMP; test/cluster-route-pump-order.test.ts).
 */
interface Wait {
  left: Set<string>;
  go: () => void;
  timer: NodeJS.Timeout | undefined;
}

export class RecordWaits {
  /** By message id, the waits for its record. */
  private readonly byId = new Map<string, Set<Wait>>();
  /** The waits under way, each a hand-out not made yet. */
  private readonly pending = new Set<Wait>();
  private readonly onSettled: Array<() => void> = [];

  /**
   * Hand-outs held now. A drain's ack barrier counts them: it counted only what was handed out,
   * and a node whose PUMP's hand-out was held exited without it, its records never sent: the
   * user's other nodes got those messages at their ack deadlines (test/cluster-record-wait-drain.test.ts).
   */
  get holding(): number {
    return this.pending.size;
  }

  /** Once no hand-out is held (each within its bound): the node stops after them, with no timer left armed. */
  settled(): Promise<void> {
    if (this.pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.onSettled.push(resolve));
  }

  /** Runs `go` once the records of every one of `ids` arrived (arrived()), or after `ms`. */
  wait(ids: readonly string[], ms: number, go: () => void): void {
    const wait: Wait = { left: new Set(ids), go, timer: undefined };
    // A record that never comes (its node died after its route) holds no one past the bound.
    wait.timer = setTimeout(() => this.finish(wait), ms);
    wait.timer.unref(); // nor a stopping node's exit
    this.pending.add(wait);
    for (const id of wait.left) {
      const waits = this.byId.get(id) ?? new Set<Wait>();
      waits.add(wait);
      this.byId.set(id, waits);
    }
  }

  /** The record of message `id` reached this node and was handed to its connections. */
  arrived(id: string): void {
    if (this.byId.size === 0) return;
    const waits = this.byId.get(id);
    if (waits === undefined) return;
    this.byId.delete(id);
    for (const wait of waits) {
      wait.left.delete(id);
      if (wait.left.size === 0) this.finish(wait);
    }
  }

  private finish(wait: Wait): void {
    if (wait.timer === undefined) return;
    clearTimeout(wait.timer);
    wait.timer = undefined;
    this.pending.delete(wait);
    for (const id of wait.left) {
      const waits = this.byId.get(id);
      waits?.delete(wait);
      if (waits?.size === 0) this.byId.delete(id);
    }
    wait.go();
    if (this.pending.size === 0 && this.onSettled.length > 0) for (const resolve of this.onSettled.splice(0)) resolve();
  }
}

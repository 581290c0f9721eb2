/**
 * Store writes that follow a change the broker has already made in memory (the removal after an
 * ack, a move to the dead-letter queue, a requeued letter's removal): when one fails (disk
 * full), it is kept and made again once the store can write, so that the store catches up
 * with memory instead of bringing acknowledged messages back at the next restart.
 * At most `limit` wait; beyond that the oldest is given up, with a log line: its message may
 * come back after a restart (at-least-once still holds).
 */
import type { Logger } from '../util/logger.js';

type Write = () => Promise<boolean>;

export class UnsavedWrites {
  private pending: Write[] = [];
  private dropped = 0;

  constructor(
    private readonly limit: number,
    private readonly log: Logger,
  ) {}

  get size(): number {
    return this.pending.length;
  }

  /** Runs `write` now; keeps it for retry() if the store could not write it. Resolves with whether it was written now. */
  write(write: Write): Promise<boolean> {
    return write().then((saved) => {
      if (saved) return true;
      if (this.pending.length >= this.limit) {
        this.pending.shift();
        if (this.dropped++ === 0) this.log.warn({ limit: this.limit }, 'too many store writes wait for the store to recover: the oldest are given up (their messages may come back after a restart)');
      }
      this.pending.push(write);
      return false;
    });
  }

  /** The store can write again: makes every kept write again (a failure keeps it again). */
  retry(): void {
    const again = this.pending;
    this.pending = [];
    this.dropped = 0;
    for (const write of again) void this.write(write);
  }
}

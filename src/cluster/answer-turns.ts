/**
 * How many answers of the JOIN script (joins and resumes of history groups, history.ts) a node
 * has Redis send at once; the others wait their turn, in the order asked. They all come on the
 * node's one subscriber connection, which Redis closes past 32 MB waiting (8 MB for a minute:
 * its default client-output-buffer-limit for pubsub). A node back from an outage with members
 * in 200 groups that missed 250 KB each asked for them all at once, lost the connection, asked
 * again, and so on, its members never given what they missed.
 */

/** Bytes of answers (each up to max_replay_bytes) on their way at once. */
const ANSWER_BYTES_AT_ONCE = 4 * 1024 * 1024;

export class AnswerTurns {
  /** Sent and not yet answered (tokens). */
  private readonly asking = new Set<string>();
  private readonly waiting = new Map<string, () => void>();
  private readonly most: number;

  constructor(maxAnswerBytes: number) {
    this.most = Math.max(1, Math.floor(ANSWER_BYTES_AT_ONCE / maxAnswerBytes));
  }

  /** Runs `send` now when there is room, else once the answers before it leave some. */
  take(token: string, send: () => void): void {
    if (this.asking.size < this.most) this.start(token, send);
    else this.waiting.set(token, send);
  }

  /** `token`'s answer came, or will not (or it was never sent): the next ones waiting are sent. */
  done(token: string): void {
    this.waiting.delete(token);
    if (!this.asking.delete(token)) return;
    for (const [next, send] of this.waiting) {
      if (this.asking.size >= this.most) return;
      this.waiting.delete(next);
      this.start(next, send);
    }
  }

  /** Redis went: those waiting are never sent (their askers are refused). */
  dropWaiting(): void {
    this.waiting.clear();
  }

  private start(token: string, send: () => void): void {
    this.asking.add(token);
    send();
  }
}

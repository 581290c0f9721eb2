/**
 * How much of stored backlogs the broker reads and encodes in one turn, all recipients
 * together. A user's window bounds what one reconnect takes out; this bounds what many take
 * in the same turn: after a restart every user reconnects at once, and the broker reads up to
 * 4,096 shard records per turn. 100 users each with a window's worth (1,000 messages of 4 KB)
 * stored, reconnecting in one turn, held the broker 9.1 s, every other client's traffic with it.
 */
export class TurnBudget {
  private bytes = 0;
  private messages = 0;
  private resetQueued = false;

  constructor(
    private readonly maxBytes: number,
    private readonly maxMessages: number,
  ) {}

  /** Whether a message of `bytes` may still go out this turn, counted if so; the turn's first always may (a message larger than the budget goes alone). */
  take(bytes: number): boolean {
    if (this.messages > 0 && (this.messages >= this.maxMessages || this.bytes + bytes > this.maxBytes)) return false;
    this.bytes += bytes;
    this.messages++;
    if (!this.resetQueued) {
      this.resetQueued = true;
      setImmediate(() => {
        this.resetQueued = false;
        this.bytes = this.messages = 0;
      });
    }
    return true;
  }
}

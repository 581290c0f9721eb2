/**
 * A history group's resume after an outage that Redis refused while it stayed (a script error,
 * an answer later than two command_timeouts) is asked again (history.ts): its members would
 * otherwise miss what it would have given them until their next message showed the gap. Here,
 * apart from the asking, is when: with a doubling backoff and jitter, a bounded number of times,
 * so a group Redis keeps refusing is given up (a gap, as before) rather than held for good: its
 * live messages are not forwarded while its resume is awaited (the answer carries them).
 */

/** Tries after the first refusal; the waits add up to about 16 s at the default command_timeout. */
const RETRIES = 8;
const FIRST_WAIT_MS = 100;

export class ResumeRetries {
  /** Per group refused, the retries spent, and the timer of the next one while it waits. */
  private readonly groups = new Map<string, { spent: number; timer: NodeJS.Timeout | null }>();

  /**
   * @param maxWaitMs the longest wait between two tries
   * @param ask runs the group's resume again
   */
  constructor(
    private readonly maxWaitMs: number,
    private readonly ask: (group: string) => void,
  ) {}

  /** `group`'s resume was refused: whether it is asked again (later), or has had its tries. */
  schedule(group: string): boolean {
    const entry = this.groups.get(group) ?? { spent: 0, timer: null };
    if (entry.spent >= RETRIES) {
      this.forget(group);
      return false;
    }
    const wait = Math.min(this.maxWaitMs, FIRST_WAIT_MS * 2 ** entry.spent) * (0.8 + Math.random() * 0.4);
    entry.spent++;
    clearTimeout(entry.timer ?? undefined);
    entry.timer = setTimeout(() => {
      entry.timer = null;
      this.ask(group);
    }, wait);
    entry.timer.unref();
    this.groups.set(group, entry);
    return true;
  }

  /**
   * A join of `group` is about to be asked: a retry waiting its turn is asked first, so that its
   * answer reaches the node before the join's (the joiner is subscribed at the join's answer, and
   * must not be given the resume's messages too). Whether one was waiting.
   */
  now(group: string): boolean {
    const entry = this.groups.get(group);
    if (entry?.timer == null) return false;
    clearTimeout(entry.timer);
    entry.timer = null;
    this.ask(group);
    return true;
  }

  /** Resumed, given up, or its members left: its tries start again from none. */
  forget(group: string): void {
    clearTimeout(this.groups.get(group)?.timer ?? undefined);
    this.groups.delete(group);
  }

  /** Redis went: every group is asked again by the resume after it. */
  clear(): void {
    for (const group of [...this.groups.keys()]) this.forget(group);
  }
}

/** The longest delay setTimeout takes: a longer one fires at once (Node, browsers). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * setTimeout for any delay the options can give: a longer one than a timer can wait (Infinity,
 * 2^32 ms) waits that long instead of firing at once, which gave up every connection the moment
 * it was dialled (connectTimeoutMs: Infinity) and reconnected in a loop (reconnect.maxMs: Infinity).
 */
export function after(ms: number, run: () => void): ReturnType<typeof setTimeout> {
  return setTimeout(run, Math.min(ms, MAX_TIMER_MS));
}

/** The client's named timers: at most one of each name armed, all cleared at once when the connection goes. */
export class NamedTimers<Name extends string> {
  private readonly armed = new Map<Name, ReturnType<typeof setTimeout>>();

  /** Arms `name` (replacing one armed under it). */
  set(name: Name, ms: number, run: () => void): void {
    this.clear(name);
    this.armed.set(name, after(ms, run));
  }

  clear(name: Name): void {
    const timer = this.armed.get(name);
    if (timer !== undefined) clearTimeout(timer);
    this.armed.delete(name);
  }

  clearAll(): void {
    for (const timer of this.armed.values()) clearTimeout(timer);
    this.armed.clear();
  }
}

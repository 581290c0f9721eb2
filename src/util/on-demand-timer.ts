/**
 * A one-shot timer for work that comes and goes: armed when there is work, re-armed by its own
 * callback while work remains, left unarmed otherwise, so an idle thread is not woken for
 * nothing. Unref'd: it never keeps a thread alive by itself.
 */
export class OnDemandTimer {
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(private readonly run: () => void) {}

  /** Whether a run is due. */
  get armed(): boolean {
    return this.timer !== null;
  }

  /** Whether stop() was called: arm() does nothing any more. */
  get done(): boolean {
    return this.stopped;
  }

  /** A run `ms` from now, unless one is due already or the timer is stopped. */
  arm(ms: number): void {
    if (this.timer !== null || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.run();
    }, ms);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}

/**
 * The store's hand-over between server processes (a pm2 reload's old and new process, or a
 * second process started on the same data_dir): only the process holding the store's lease
 * (src/store/leases.ts) loads and delivers what is stored. One that starts while another holds
 * it stands by: it serves its clients, stores what they send and delivers what it accepted
 * itself, and looks at the lease every POLL_MS; once the holder releases it (at the end of its
 * drain) or is gone (killed), it takes the lease and the stored queues (Broker.takeOver). So no
 * stored message is delivered by both, and none waits for a later restart.
 *
 * The holder renews the lease every RENEW_MS. Should it ever find the lease taken (only where
 * the holder's process cannot be looked up and it did not renew for LEASE_TTL_MS), it has lost
 * the queues to another process and says so (onLost).
 *
 * A process standing by keeps a standby record (leases.ts), renewed as often, and releases it
 * when it stops. When the holder renews and finds a standby gone and none still there, it loads
 * what that one stored (`adopt`): a reload whose new process stopped before the old one strands
 * nothing until the next restart. Not while another stands by: its messages are in the same
 * queue, and both processes would deliver them.
 */
import type { LeaseRecord, LeaseState, StoreLease } from '../store/leases.js';
import type { Logger } from '../util/logger.js';
import { alignedDelay } from '../util/timer-grid.js';

/** How long a lease lasts without renewal where the holder's process cannot be looked up. */
export const LEASE_TTL_MS = 15_000;
const RENEW_MS = 3_000;
/** How often a standing-by process looks at the lease: the delay of a hand-over. */
const POLL_MS = 50;

export interface OwnershipEvents {
  /** The lease is ours now, taken from `previous` (undefined: nobody held it before). */
  acquired(previous: LeaseRecord | undefined, why: string): void;
  /** Another process took the lease while we held it. */
  lost(holder: LeaseRecord): void;
  /**
   * Processes that stood by are gone, and none stands by now: load what they stored, if
   * `alone()` still says so right before the load (another may have started meanwhile).
   * Resolves false when that cannot be done now (asked again at the next renewal).
   */
  adopt(gone: readonly LeaseRecord[], alone: () => boolean): Promise<boolean>;
}

export class Ownership {
  private owned = false;
  /** Whether this process has a standby record (it stands by, or just took the lease). */
  private standingBy = false;
  private standbyRenewedAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private busy = false;

  constructor(
    private readonly lease: StoreLease,
    private readonly log: Logger,
    private readonly events: OwnershipEvents,
  ) {}

  get owns(): boolean {
    return this.owned;
  }

  /**
   * Tries once to take the lease: true when this process holds it now (then it renews it);
   * false when another live process does (then it stands by and `acquired` follows later).
   */
  async start(): Promise<boolean> {
    const found = await this.lease.acquire();
    if (found.state === 'held') {
      // Before the broker stores anything: a holder that finds no record takes nothing of ours.
      try {
        await this.lease.standBy();
        this.standingBy = true;
        this.standbyRenewedAt = Date.now();
      } catch (err) {
        this.log.warn({ err }, 'store lease: could not write this process\'s standby record; trying again');
      }
      this.log.info(
        { holderPid: found.record.pid, holder: found.record.holder },
        'the store is held by another process: this one delivers only the messages it accepts until that one releases the store (a pm2 reload hand-over) or exits',
      );
      this.schedule(POLL_MS, () => this.poll());
      return false;
    }
    this.took(found);
    return true;
  }

  /** Stops renewing and polling (the lease stays as it is until release()). */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Lets another process take the queues: call once everything this process wrote is committed. */
  async release(): Promise<void> {
    this.stop();
    if (this.standingBy) {
      this.standingBy = false;
      await this.lease.leaveStandby(true);
    }
    if (!this.owned) return;
    this.owned = false;
    await this.lease.release();
    this.log.info('store lease released');
  }

  private took(found: LeaseState): void {
    // Stopped while taking it (a shutdown during the overlap): let the next process have it at once.
    if (this.stopped) {
      void this.lease.release().catch(() => {});
      return;
    }
    this.owned = true;
    if (found.state === 'free') this.events.acquired(found.previous, found.why);
    if (this.standingBy) {
      // What it stored is in its own queues now (the take-over loaded the rest).
      this.standingBy = false;
      this.lease.leaveStandby(false).catch((err: unknown) => this.log.warn({ err }, 'store lease: could not remove this process\'s standby record'));
    }
    this.schedule(RENEW_MS, () => this.renew());
  }

  private poll(): void {
    // A read first: the write transaction only when the lease looks free.
    if (this.lease.read().state === 'held') {
      if (Date.now() - this.standbyRenewedAt < RENEW_MS) return this.schedule(POLL_MS, () => this.poll());
      // Seen from another host (no /proc to look at), the record lives by its renewals.
      return this.attempt(async () => {
        await this.lease.standBy();
        // Also the first write, when the one at start failed.
        this.standingBy = true;
        this.standbyRenewedAt = Date.now();
        this.schedule(POLL_MS, () => this.poll());
      }, POLL_MS, () => this.poll());
    }
    this.attempt(async () => {
      const found = await this.lease.acquire();
      if (found.state === 'held') return this.schedule(POLL_MS, () => this.poll());
      this.took(found);
    }, POLL_MS, () => this.poll());
  }

  private renew(): void {
    this.attempt(async () => {
      const found = await this.lease.acquire();
      if (found.state !== 'held') {
        await this.adoptStandbys();
        return this.schedule(RENEW_MS, () => this.renew());
      }
      this.owned = false;
      this.log.error({ code: 'E_INTERNAL', holderPid: found.record.pid, holder: found.record.holder }, 'store lease lost to another process');
      this.events.lost(found.record);
    }, RENEW_MS, () => this.renew());
  }

  /** The holder loads what gone standbys stored, once none stands by, then forgets their records. */
  private async adoptStandbys(): Promise<void> {
    const alone = (): boolean => this.lease.standbys().every((s) => s.gone);
    const standbys = this.lease.standbys();
    if (standbys.length === 0 || standbys.some((s) => !s.gone)) return;
    if (!(await this.events.adopt(standbys.map((s) => s.record), alone))) return;
    await this.lease.forgetStandbys(standbys.map((s) => s.key));
  }

  /** Runs `step`; a failed write (a full disk) is logged and tried again after `retryMs`. */
  private attempt(step: () => Promise<void>, retryMs: number, again: () => void): void {
    if (this.stopped || this.busy) return;
    this.busy = true;
    step()
      .catch((err: unknown) => {
        this.log.warn({ err }, 'store lease: write failed; trying again');
        this.schedule(retryMs, again);
      })
      .finally(() => (this.busy = false));
  }

  private schedule(ms: number, step: () => void): void {
    if (this.stopped) return;
    // On the grid (timer-grid.ts): a renewal wakes the thread with its other periodic timers.
    this.timer = setTimeout(() => {
      this.timer = null;
      step();
    }, alignedDelay(ms));
    // The lease alone must not keep a process alive.
    this.timer.unref();
  }
}

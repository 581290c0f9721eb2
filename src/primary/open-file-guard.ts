/**
 * Stops the shards accepting sockets while the process is near its open-file limit, and lets
 * them accept again once it has room.
 *
 * Why: when accept() fails with EMFILE, uSockets leaves the connection in the kernel's queue
 * and epoll (level-triggered) reports the listen socket again at once, so every shard spins on
 * it for as long as the limit holds. A flood of TCP sockets that never send a request (each
 * held for uWS's 10 s HTTP timeout, counted nowhere: max_connections counts WebSockets) took a
 * server at `ulimit -n 300` to 193% CPU on two cores, its clients' P99 from 2.5 to 4.6 ms.
 * With no listen socket the kernel refuses new connections instead, at no cost to us.
 *
 * How, cheaply: once a second the primary opens /dev/null. The kernel hands out the lowest free
 * descriptor number, so a number within `headroom` of the limit means every one below it is
 * taken; EMFILE means all are. Either pauses accepting. While paused, /proc/self/fd is counted
 * (a directory read: milliseconds with thousands open, so only then), and accepting resumes
 * once twice the headroom is free. A low number proves nothing about the rest, so a limit
 * reached between two looks spins the shards until the next one: a second at most.
 */
import { closeSync, openSync, readdirSync } from 'node:fs';
import type { Logger } from '../util/logger.js';
import { OnDemandTimer } from '../util/on-demand-timer.js';
import { alignedDelay } from '../util/timer-grid.js';

const INTERVAL_MS = 1000;

/** What the guard asks the system; tests give their own. */
export interface DescriptorProbe {
  /** The lowest free descriptor number, or null when none is free (EMFILE, ENFILE). */
  lowestFree(): number | null;
  /** Descriptors open, or null when they cannot be counted (none free to read the directory). */
  count(): number | null;
}

export interface OpenFileGuardOptions {
  /** The soft RLIMIT_NOFILE: descriptor numbers must be below it. */
  limit: number;
  probe?: DescriptorProbe;
  /** Close every shard's listen socket / open them again. */
  pause(): void;
  resume(): void;
  log: Logger;
}

export class OpenFileGuard {
  private paused = false;
  private pausedAt = 0;
  private pauses = 0;
  readonly headroom: number;
  private readonly probe: DescriptorProbe;
  private readonly timer = new OnDemandTimer(() => {
    this.check();
    this.timer.arm(alignedDelay(INTERVAL_MS));
  });

  constructor(private readonly options: OpenFileGuardOptions) {
    // Room for what the server itself opens meanwhile: a store file, a log, a worker's pipes.
    this.headroom = Math.max(32, Math.ceil(options.limit * 0.02));
    this.probe = options.probe ?? systemProbe;
  }

  /** Whether the shards are told not to accept; how many times they were. */
  get state(): { accepting: boolean; pauses: number } {
    return { accepting: !this.paused, pauses: this.pauses };
  }

  start(): void {
    // No limit worth watching (unlimited, or too small to leave room for anything).
    if (!Number.isFinite(this.options.limit) || this.options.limit <= 4 * this.headroom) return;
    this.timer.arm(alignedDelay(INTERVAL_MS));
  }

  stop(): void {
    this.timer.stop();
  }

  /** One look; the timer calls it every second. */
  check(): void {
    const { limit, log } = this.options;
    if (!this.paused) {
      const lowest = this.probe.lowestFree();
      if (lowest !== null && lowest < limit - this.headroom) return;
      this.paused = true;
      this.pausedAt = Date.now();
      this.pauses++;
      this.options.pause();
      log.warn({ code: 'E_OVERLOADED', limit, lowest_free: lowest }, 'near the open-file limit: not accepting connections until descriptors are free');
      return;
    }
    const open = this.probe.count();
    if (open === null || open > limit - 2 * this.headroom) return;
    this.paused = false;
    this.options.resume();
    log.info({ limit, open, paused_ms: Date.now() - this.pausedAt }, 'accepting connections again');
  }
}

/** Out of descriptors, the process's (EMFILE) or the system's (ENFILE). */
const exhausted = (err: unknown): boolean => ['EMFILE', 'ENFILE'].includes((err as NodeJS.ErrnoException).code ?? '');

// Another failure (no /dev/null or /proc in a sandbox) says nothing of descriptors: it reads as
// room, so that the guard never keeps a server from accepting for want of a file to look at.
const systemProbe: DescriptorProbe = {
  lowestFree() {
    let fd: number;
    try {
      fd = openSync('/dev/null', 'r');
    } catch (err) {
      return exhausted(err) ? null : 0;
    }
    closeSync(fd);
    return fd;
  },
  count() {
    try {
      // One of them is the directory being read.
      return readdirSync('/proc/self/fd').length - 1;
    } catch (err) {
      return exhausted(err) ? null : 0;
    }
  },
};

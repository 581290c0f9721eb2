/**
 * What a node does after a Redis script timed out: Redis may have run it all the same, and its
 * effect then waits for a follow-up that only its lost answer would have started. Follow-ups run
 * once Redis answers again, probed every two command timeouts (one sent into the same stall would
 * time out too, its own effect lost the same way); should the node go down meanwhile, the resync
 * after the outage does them (ClusterMessaging.rescan).
 */
import type { Config } from '../config/schema.js';
import type { Logger } from '../util/logger.js';
import { logCommandFailure } from './redis.js';
import { RECLAIM } from './reclaim-script.js';

/** Most timed-out claims kept for one follow-up; past it, their messages wait for their ack deadline. */
const MAX_RECLAIMS = 10_000;

export interface FollowUpParts {
  config: Config;
  log: Logger;
  /** Whether Redis is reachable now. */
  up(): boolean;
  /** Messages fall due at `at` (epoch ms): sweep then. */
  dueAt(at: number): void;
  script<T>(source: string, args: Array<string | number>): Promise<T>;
}

export class TimeoutFollowUps {
  /** Claims that timed out, to undo once Redis answers (RECLAIM): target, the claim's time, its one id or ''. */
  private readonly reclaimDue: Array<[target: string, at: number, id: string]> = [];

  constructor(private readonly parts: FollowUpParts) {}

  /**
   * A claim made at `at` timed out: had it run, its messages would be in flight to nobody until
   * their ack deadline (30 s by default). Once Redis answers, RECLAIM makes them due now and the
   * sweep routes them again (one follow-up for all the claims that timed out meanwhile).
   */
  claimTimedOut(target: string, at: number, id: string): void {
    if (this.reclaimDue.length >= MAX_RECLAIMS) return;
    if (this.reclaimDue.length === 0) {
      this.afterTimeout(() => this.reclaim(this.reclaimDue.splice(0)), () => (this.reclaimDue.length = 0));
    }
    this.reclaimDue.push([target, at, id]);
  }

  /** Runs `again` once Redis answers again; `then` either way, last (also when Redis is down for good: the resync does `again`'s work). */
  afterTimeout(again: () => void, then: () => void = () => {}): void {
    const timer = setTimeout(() => {
      if (!this.parts.up()) return then();
      this.parts.script('return 1', [this.parts.config.cluster.key_prefix]).then(
        () => {
          again();
          then();
        },
        () => this.afterTimeout(again, then),
      );
    }, 2 * this.parts.config.cluster.command_timeout * 1000);
    timer.unref();
  }

  private reclaim(claims: ReadonlyArray<[string, number, string]>): void {
    const prefix = this.parts.config.cluster.key_prefix;
    for (const [target, at, id] of claims) {
      this.parts.script<number>(RECLAIM, [prefix, target, at, Date.now(), id]).then(
        (made) => made > 0 && this.parts.dueAt(Date.now()),
        (err: unknown) => logCommandFailure(this.parts, err, 'reclaim'),
      );
    }
  }
}

/**
 * Group history across a pm2 reload (history.persist). The new process starts while the old one
 * still holds the store (ownership.ts) and goes on publishing to its groups; the old one writes
 * its history and its clean mark only as it stops, and the clients it drains reconnect to the
 * new one at that very moment, each re-joining its groups with `since`. Had the new process
 * loaded the history at its start, it would have made a new epoch for every group (the old
 * one's were still being written), and every one of those clients would be told to reload.
 *
 * So a standing-by process holds what touches history (joins and leaves of history groups,
 * `history` queries, pubs to history groups) until it takes the store over, loads the history
 * the old process left (epochs and offsets as its clients know them), and then handles what it
 * held, in arrival order: a recovering join gets its exact replay, a held pub the next offset.
 * Should the store not come within history.handover_wait (another process running on the same
 * store for good), it loads what is there under new epochs, as a restart after a crash does.
 *
 * Bounded: beyond MAX_HELD_RECORDS or MAX_HELD_BYTES in all, or MAX_HELD_PER_USER records of one
 * user (so that one user, with many connections each in many groups, cannot fill the hold and
 * keep everyone else's recovery out), what would be held is refused (E_OVERLOADED, retry
 * shortly), except leaves, which are never refused.
 */
import { ToBroker } from '../link/records.js';
import type { Logger } from '../util/logger.js';
import type { ShardLink } from './shard-link.js';

export const MAX_HELD_RECORDS = 100_000;
export const MAX_HELD_BYTES = 64 * 1024 * 1024;
/** Twice what one connection may join (limits.max_groups_per_connection's default). */
export const MAX_HELD_PER_USER = 2_000;
/** What one held record costs besides its data: fields, closure, queue slot. */
const RECORD_OVERHEAD = 256;
export const HOLD_FULL_MESSAGE = 'group history is being handed over from the previous process; retry shortly';

export interface HistoryHoldOptions {
  waitMs: number;
  log: Pick<Logger, 'info' | 'warn'>;
  /** Where a refusal goes when the hold is full. */
  link: Pick<ShardLink, 'error' | 'groupJoinFailed'>;
  /** Whether a group keeps history. */
  keeps(group: string): boolean;
  /** The user of a connection (records name connections), if known. */
  userOf(sid: string): string | undefined;
  /** Called once the wait is over without the store: the owner loads history and calls release(). */
  timedOut(): void;
  /** Default MAX_HELD_RECORDS, MAX_HELD_BYTES and MAX_HELD_PER_USER. */
  maxRecords?: number;
  maxBytes?: number;
  maxPerUser?: number;
}

export class HistoryHold {
  private readonly held: Array<() => void> = [];
  private readonly perUser = new Map<string, number>();
  private bytes = 0;
  private refusedAny = false;
  private readonly since = Date.now();
  private readonly timer: NodeJS.Timeout;
  private readonly log: HistoryHoldOptions['log'];

  constructor(private readonly options: HistoryHoldOptions) {
    const { waitMs, log } = options;
    this.log = log;
    this.timer = setTimeout(options.timedOut, waitMs);
    this.timer.unref();
    log.info(
      { waitS: waitMs / 1000 },
      'group history waits for the store: joins, leaves, history queries and pubs of history groups are held until the process holding it stops (a pm2 reload), or history.handover_wait passes',
    );
  }

  /**
   * Holds a shard's record that touches history (`later` handles it), or refuses it when the
   * hold is full; false: not such a record, to be handled now.
   */
  holdsRecord(shard: number, kind: number, f: unknown[], later: () => void): boolean {
    const { link, keeps } = this.options;
    switch (kind) {
      case ToBroker.PUB: {
        const [sid, ref, , group, data] = f as [string, string | null, string, string, string];
        if (!keeps(group)) return false;
        if (!this.hold(later, data.length, false, this.options.userOf(sid))) link.error(shard, sid, 'E_OVERLOADED', HOLD_FULL_MESSAGE, ref);
        return true;
      }
      case ToBroker.GROUP_JOIN: {
        const [sid, group, ref] = f as [string, string, string | null];
        if (!keeps(group)) return false;
        if (!this.hold(later, 0, false, this.options.userOf(sid))) link.groupJoinFailed(shard, sid, group, ref, HOLD_FULL_MESSAGE, 'E_OVERLOADED');
        return true;
      }
      case ToBroker.HISTORY: {
        const [sid, group, ref] = f as [string, string, string | null];
        if (!keeps(group)) return false;
        if (!this.hold(later, 0, false, this.options.userOf(sid))) link.error(shard, sid, 'E_OVERLOADED', HOLD_FULL_MESSAGE, ref);
        return true;
      }
      case ToBroker.GROUP_LEAVE:
        // Never refused: the shard counts on its answer to settle the connection's ops in order.
        this.hold(later, 0, true);
        return true;
      default:
        return false;
    }
  }

  /** Holds `handle` for release(); false (nothing held) when the hold, or `user`'s share of it, is full, unless `always`. */
  hold(handle: () => void, dataBytes: number, always = false, user?: string): boolean {
    const bytes = dataBytes + RECORD_OVERHEAD;
    const { maxRecords = MAX_HELD_RECORDS, maxBytes = MAX_HELD_BYTES, maxPerUser = MAX_HELD_PER_USER } = this.options;
    const users = user === undefined ? 0 : (this.perUser.get(user) ?? 0);
    if (!always && (this.held.length >= maxRecords || this.bytes + bytes > maxBytes || users >= maxPerUser)) {
      if (!this.refusedAny) this.log.warn({ held: this.held.length, bytes: this.bytes, user }, 'history hold full (in all, or for one user): history ops refused (E_OVERLOADED) until the store is handed over');
      this.refusedAny = true;
      return false;
    }
    this.held.push(handle);
    this.bytes += bytes;
    if (user !== undefined) this.perUser.set(user, users + 1);
    return true;
  }

  /** Handles everything held, in order (the history must be loaded first). `why`: for the log. */
  release(why: 'taken over' | 'waited'): void {
    clearTimeout(this.timer);
    const held = this.held.splice(0);
    this.bytes = 0;
    this.perUser.clear();
    for (const handle of held) handle();
    this.log.info({ heldMs: Date.now() - this.since, records: held.length, why }, 'group history loaded; the ops held for it handled');
  }

  /** The process stops before the store came: what was held has no one left to answer. */
  stop(): void {
    clearTimeout(this.timer);
    this.held.length = 0;
  }
}

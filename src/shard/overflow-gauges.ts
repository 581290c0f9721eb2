/**
 * What waits in this shard's ring writers' overflow (records that found their ring full), put
 * into the shared table where /health reads it: only this thread knows it. The primary watches
 * the rest of each link (link-monitor.ts).
 *
 * Published as the first record is queued, then every INTERVAL_MS while any waits, and once
 * more when none does (the table then shows the drain). A shard whose rings never fill sets no
 * timer: an idle one is not woken four times a second to write zeros.
 */
import { Link, type ShardTable } from '../shared/shard-table.js';
import { OnDemandTimer } from '../util/on-demand-timer.js';

/** How often the overflow is published while any waits. */
const INTERVAL_MS = 250;

/** A writer's overflow: bytes waiting, and when the oldest was queued (0: none). */
export interface OverflowSource {
  readonly backlog: number;
  readonly oldestQueuedAt: number;
}

export interface OverflowGaugesOptions {
  shard: number;
  table: ShardTable;
  toBroker: OverflowSource;
  toShards: OverflowSource;
}

export class OverflowGauges {
  private readonly timer = new OnDemandTimer(() => this.publish());

  constructor(private readonly options: OverflowGaugesOptions) {}

  /** A record found its ring full and waits: publish now, unless already publishing. */
  queued(): void {
    if (!this.timer.armed && !this.timer.done) this.publish();
  }

  stop(): void {
    this.timer.stop();
  }

  private publish(): void {
    const { shard, table, toBroker, toShards } = this.options;
    table.setLinkOverflow(shard, Link.TO_BROKER, toBroker.backlog, toBroker.oldestQueuedAt);
    table.setLinkOverflow(shard, Link.TO_SHARDS, toShards.backlog, toShards.oldestQueuedAt);
    if (toBroker.backlog > 0 || toShards.backlog > 0) this.timer.arm(INTERVAL_MS);
  }
}

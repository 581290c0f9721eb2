/**
 * Watches every ring from the primary thread, which holds them all: per shard, the bytes
 * unread in the rings it writes (to the broker, to the other shards) and in the broker's ring
 * to it, and since when they have not drained; and the broker's own overflow toward it. All
 * of it goes into the shared table, where /health reads it. A consumer too busy to read (a
 * stall, a hot loop) cannot report itself; its rings show it.
 *
 * The rings are looked at every 250 ms while any holds unread bytes or the broker's overflow
 * holds any, and every second while all are empty: an idle server wakes this thread once a
 * second for it, not four times. Bytes written into empty rings are so seen up to a second
 * later, and "not drained since" counts from then; once seen, a drain shows within 250 ms.
 */
import { RingProbe } from '../rings/ring.js';
import { Link, LINKS, type ShardTable } from '../shared/shard-table.js';
import { OnDemandTimer } from '../util/on-demand-timer.js';
import { alignedDelay } from '../util/timer-grid.js';

/** How often the rings are looked at while any holds something; a link counts as stuck after monitoring.link_stuck_after. */
const INTERVAL_MS = 250;
/** How often while all are empty: nothing waits there that could be stuck. */
const IDLE_INTERVAL_MS = 1000;

interface Watched {
  probe: RingProbe;
  /** Who reads it: a shard, or -1 for the broker (this thread). */
  consumer: number;
  lastRead: number;
  /** Since when unread bytes have sat there without the consumer reading any (0: it drains, or is empty). */
  stuckSince: number;
}

export interface LinkMonitorOptions {
  table: ShardTable;
  /** toBroker[i]: shard i -> broker; fromBroker[i]: broker -> shard i. */
  toBroker: SharedArrayBuffer[];
  fromBroker: SharedArrayBuffer[];
  /** rings[from][to]: shard -> shard (null where from === to). */
  rings: (SharedArrayBuffer | null)[][];
  /** The broker's overflow toward `shard`: bytes, and when its oldest record was queued (0: none). */
  brokerOverflow(shard: number): { bytes: number; since: number };
}

export class LinkMonitor {
  /** [shard][link]: the rings that make up that link. */
  private readonly watched: Watched[][][];
  private readonly timer = new OnDemandTimer(() => this.timer.arm(alignedDelay(this.sample() ? INTERVAL_MS : IDLE_INTERVAL_MS)));

  constructor(private readonly options: LinkMonitorOptions) {
    const watch = (buffer: SharedArrayBuffer, consumer: number): Watched => {
      const probe = new RingProbe(buffer);
      return { probe, consumer, lastRead: probe.readIndex(), stuckSince: 0 };
    };
    this.watched = options.toBroker.map((_, shard) => {
      const links: Watched[][] = LINKS.map(() => []);
      links[Link.TO_BROKER]!.push(watch(options.toBroker[shard]!, -1));
      links[Link.FROM_BROKER]!.push(watch(options.fromBroker[shard]!, shard));
      options.rings[shard]!.forEach((buffer, to) => {
        if (buffer) links[Link.TO_SHARDS]!.push(watch(buffer, to));
      });
      return links;
    });
  }

  start(): void {
    this.timer.arm(alignedDelay(INTERVAL_MS));
  }

  stop(): void {
    this.timer.stop();
  }

  /** Puts every link's state into the table; returns whether anything waits in a ring or the broker's overflow. */
  sample(now = Date.now()): boolean {
    const { table, brokerOverflow } = this.options;
    let waiting = false;
    this.watched.forEach((links, shard) => {
      links.forEach((rings, link) => {
        let unread = 0;
        let stuckSince = 0;
        for (const ring of rings) {
          unread += this.observe(ring, now);
          if (ring.stuckSince > 0 && (stuckSince === 0 || ring.stuckSince < stuckSince)) stuckSince = ring.stuckSince;
        }
        table.setLinkUnread(shard, link, unread, stuckSince);
        if (unread > 0) waiting = true;
      });
      const overflow = brokerOverflow(shard);
      table.setLinkOverflow(shard, Link.FROM_BROKER, overflow.bytes, overflow.since);
      if (overflow.bytes > 0) waiting = true;
    });
    return waiting;
  }

  /** Unread bytes in `ring`; updates since when they have not drained. */
  private observe(ring: Watched, now: number): number {
    const unread = ring.probe.used();
    const read = ring.probe.readIndex();
    // A shard that is not up reads nothing, and its successor discards what is left: not stuck.
    if (unread === 0 || (ring.consumer >= 0 && !this.options.table.isUp(ring.consumer))) ring.stuckSince = 0;
    else if (read !== ring.lastRead || ring.stuckSince === 0) ring.stuckSince = now;
    ring.lastRead = read;
    return unread;
  }
}

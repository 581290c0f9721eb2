/**
 * What a user's new connection finds waiting in Redis (messaging.ts's connect): CONNECT writes
 * its presence, claims what waits and lists what is in flight; past CONNECT_LISTED in flight,
 * CONNECT_PAGE lists the rest, a script of at most CONNECT_LISTED each (a script runs alone in
 * Redis). Apart from messaging.ts because the listing and its resend budget are one concern.
 */
import { ResendBudget } from '../broker/resend-budget.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../util/logger.js';
import type { Fields } from './claimed-delivery.js';
import type { ClusterPresence } from './presence.js';
import { logCommandFailure, timedOut } from './redis.js';
import type { ScriptRunner } from './script-runner.js';
import { claimHoldMs, CONNECT, CONNECT_GONE, CONNECT_PAGE } from './window-scripts.js';

/** Most of a user's waiting messages one CONNECT or PUMP claims; the node pumps again for the rest. */
export const PUMP_CLAIMS = 500;
/** Most messages in flight one CONNECT or CONNECT_PAGE lists for a new connection (10,000 in one held Redis 80 ms). */
export const CONNECT_LISTED = 500;

/** A connection's backlog: `entries` in order, [1, fields] claimed now (for every connection of the user), [0, fields] in flight (for the new one). */
export interface Backlog {
  nodes: string[];
  pending: number;
  entries: Array<[number, Fields]>;
  /** PUMP is to run once this backlog has gone out: some were claimed (new messages wait for it: window-scripts.ts pump()), or held back behind a listing in pages. */
  pumpAfter: boolean;
}

/**
 * Whose backlog: a new connection's (`connect`: the listing within the resend budget), the
 * rescan's after an outage for connections it holds (`rescan`: the whole listing, whatever the
 * budget: these connections are not reconnecting in a loop), or the rescan's for a user with
 * none (`claim`: nothing in flight is read, what waits is claimed).
 */
export type BacklogKind = 'connect' | 'rescan' | 'claim';

export interface BacklogParts {
  config: Config;
  node: string;
  presence: ClusterPresence;
  scripts: ScriptRunner;
  log: Logger;
  up(): boolean;
  /** A claiming script timed out: it may have run (timeout-follow-ups.ts). */
  claimTimedOut(target: string, at: number): void;
}

type Entry = [number, Fields];

export class Backlogs {
  /** What a user's new connections on this node get again of its messages in flight. */
  private readonly resends: ResendBudget;
  private readonly delivery: Config['websocket']['delivery'];

  constructor(private readonly parts: BacklogParts) {
    this.delivery = parts.config.websocket.delivery;
    this.resends = new ResendBudget(this.delivery.max_inflight_per_user, this.delivery.ack_timeout * 1000);
  }

  /**
   * CONNECT, then its pages: `connections` of the user on this node (the new one included);
   * over `maxConnections` (0: no cap) on every node, refused. `wanted`: whether the listing is
   * still for someone (the connection may close meanwhile), asked before each page.
   */
  async of(user: string, connections: number, maxConnections: number, wanted: () => boolean, kind: BacklogKind = 'connect'): Promise<Backlog | { holding: number }> {
    const now = Date.now();
    const { presence, node, config } = this.parts;
    // Taken before the script, what was not listed given back after: connections opening at once each saw the whole budget.
    // None for a rescan, nor is its listing or claim refused for want of it: it held the user's
    // budget from its connections opening meanwhile, and one spent by a reconnect left what was
    // stored during the outage for the user's next ack (test/cluster-rescan-budget.test.ts).
    const budgeted = kind === 'connect';
    const reserved = budgeted ? this.resends.reserve(user, now) : 0;
    const out = await this.script<[string[], number, 0 | [string, string], ...Entry[]] | ['cap', number]>(CONNECT, [
      config.cluster.key_prefix, node, user, now, this.delivery.ack_timeout * 1000, this.delivery.backoff_multiplier, this.delivery.max_backoff * 1000,
      presence.aliveSince(now), connections, this.delivery.max_inflight_per_user, this.delivery.max_inflight_bytes_per_user, maxConnections,
      budgeted ? reserved : Number.MAX_SAFE_INTEGER, PUMP_CLAIMS, kind === 'claim' ? 0 : CONNECT_LISTED,
      claimHoldMs(config),
    ]).catch((err: unknown) => {
      this.resends.refund(user, reserved, Date.now());
      if (timedOut(err)) this.parts.claimTimedOut(`u:${user}`, now);
      throw err;
    });
    if (out[0] === 'cap') {
      this.resends.refund(user, reserved, Date.now());
      return { holding: out[1] as number };
    }
    const [nodes, pending, more, ...entries] = out as [string[], number, 0 | [string, string], ...Entry[]];
    let listed = entries.filter(([claimed]) => claimed === 0).length;
    let complete = true;
    if (more !== 0) ({ listed, complete } = await this.pages(user, more[0], more[1], listed, wanted, entries));
    // Spent only on a connection that is handed the listing: not by a rescan, nor for one that closed meanwhile.
    if (budgeted) this.resends.refund(user, reserved - (wanted() ? listed : 0), Date.now());
    // Some claimed (the rest, if cut short, and what the hold on new messages kept back
    // meanwhile: window-scripts.ts pump()), or nothing claimed behind a listing in pages: by
    // PUMP. Not when the listing did not end (a page failed, the connection closed, a rescan
    // that hands it to no connection): what waits goes at the user's next ack or ahead of its
    // next message (ROUTE_USER), as past the budget, after the in flight listed.
    return { nodes, pending, entries, pumpAfter: more === 0 ? entries.length > listed : complete };
  }

  /**
   * The messages in flight past CONNECT's listing (`listed` so far), scored after `after` up to
   * `last`, onto `entries`, without those listed before the last page that are no longer in
   * flight by then (dropGone); how many in all, and whether the listing ended (not if a page
   * failed or the connection is gone: the rest then reach it at their ack deadlines). Not
   * bounded by the resend budget: CONNECT took the whole listing within it, and a message
   * claimed meanwhile into the range (a higher priority, one swept back to waiting) is one the
   * connection gets anyway; the range's end bounds the pages.
   */
  private async pages(user: string, after: string, last: string, listed: number, wanted: () => boolean, entries: Entry[]): Promise<{ listed: number; complete: boolean }> {
    // Past the last score listed: a message listed before and claimed again meanwhile keeps its
    // score (the queue's), so it is not listed twice.
    let cursor: string | 0 = after;
    // Where the last page read begins: what was listed before it is checked again at the end.
    let lastPage = entries.length;
    while (cursor !== 0 && wanted()) {
      const page: [0 | string, ...Entry[]] | null = await this.script<[0 | string, ...Entry[]]>(CONNECT_PAGE, [this.parts.config.cluster.key_prefix, user, cursor, last, CONNECT_LISTED]).catch((err: unknown) => {
        logCommandFailure(this.parts, err, 'connect');
        return null;
      });
      if (page === null) return { listed, complete: false };
      const [next, ...found]: [0 | string, ...Entry[]] = page;
      lastPage = entries.length;
      entries.push(...found);
      listed += found.length;
      cursor = next;
    }
    if (cursor !== 0) return { listed, complete: false };
    return { listed: listed - (await this.dropGone(user, entries, lastPage)), complete: true };
  }

  /**
   * Takes out of `entries` those of its first `upTo` no longer in flight (CONNECT_GONE), and
   * says how many. The listing is handed out only once its last page is in, and each page reads
   * only its own range: one that CONNECT or an earlier page listed and another connection of
   * the user acknowledged meanwhile (through any node) reached the new connection all the same.
   * In scripts of at most CONNECT_LISTED ids, sent at once. Failed: all are kept, as before.
   */
  private async dropGone(user: string, entries: Entry[], upTo: number): Promise<number> {
    const ids = entries.slice(0, upTo).flatMap(([claimed, f]) => (claimed === 0 ? [f[0]] : []));
    const checks: Array<Promise<string[]>> = [];
    for (let i = 0; i < ids.length; i += CONNECT_LISTED) {
      checks.push(this.script<string[]>(CONNECT_GONE, [this.parts.config.cluster.key_prefix, user, ...ids.slice(i, i + CONNECT_LISTED)]));
    }
    const gone = await Promise.all(checks).then(
      (lists) => new Set(lists.flat()),
      (err: unknown) => {
        logCommandFailure(this.parts, err, 'connect');
        return new Set<string>();
      },
    );
    if (gone.size === 0) return 0;
    let kept = 0;
    for (const entry of entries) if (entry[0] === 1 || !gone.has(entry[1][0])) entries[kept++] = entry;
    const dropped = entries.length - kept;
    entries.length = kept;
    return dropped;
  }

  private script<T>(source: string, args: Array<string | number>): Promise<T> {
    return this.parts.scripts.run(source, args) as Promise<T>;
  }
}

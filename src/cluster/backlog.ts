/**
 * What a user's new connection finds waiting in Redis (messaging.ts's connect): CONNECT writes
 * its presence, claims what waits and lists what is in flight, within the resend budget. Apart
 * from messaging.ts because the listing and its resend budget are one concern.
 */
import { ResendBudget } from '../broker/resend-budget.js';
import type { Config } from '../config/schema.js';
import type { Fields } from './claimed-delivery.js';
import type { ClusterPresence } from './presence.js';
import { timedOut } from './redis.js';
import type { ScriptRunner } from './script-runner.js';
import { CONNECT } from './window-scripts.js';

/** Most of a user's waiting messages one CONNECT or PUMP claims; the node pumps again for the rest. */
export const PUMP_CLAIMS = 500;
/** Most messages in flight one CONNECT lists for a new connection (more: none, they come at their deadlines). */
export const CONNECT_LISTED = 2000;

/** A connection's backlog: `entries` in order, [1, fields] claimed now (for every connection of the user), [0, fields] in flight (for the new one). */
export interface Backlog {
  nodes: string[];
  pending: number;
  entries: Array<[number, Fields]>;
  /** Waiting messages are left for PUMP (a claim cut short): run it once this backlog has gone out. */
  pumpAfter: boolean;
}

export interface BacklogParts {
  config: Config;
  node: string;
  presence: ClusterPresence;
  scripts: ScriptRunner;
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

  /** CONNECT: `connections` of the user on this node (the new one included); over `maxConnections` (0: no cap) on every node, refused. */
  async of(user: string, connections: number, maxConnections: number): Promise<Backlog | { holding: number }> {
    const now = Date.now();
    const { presence, node, config } = this.parts;
    // Taken before the script, what was not listed given back after: connections opening at once each saw the whole budget.
    const reserved = this.resends.reserve(user, now);
    const out = await this.script<[string[], number, ...Entry[]] | ['cap', number]>(CONNECT, [
      config.cluster.key_prefix, node, user, now, this.delivery.ack_timeout * 1000, this.delivery.backoff_multiplier, this.delivery.max_backoff * 1000,
      presence.aliveSince(now), connections, this.delivery.max_inflight_per_user, this.delivery.max_inflight_bytes_per_user, maxConnections,
      reserved, PUMP_CLAIMS, CONNECT_LISTED,
    ]).catch((err: unknown) => {
      this.resends.refund(user, reserved, Date.now());
      if (timedOut(err)) this.parts.claimTimedOut(`u:${user}`, now);
      throw err;
    });
    if (out[0] === 'cap') {
      this.resends.refund(user, reserved, Date.now());
      return { holding: out[1] as number };
    }
    const [nodes, pending, ...entries] = out as [string[], number, ...Entry[]];
    const listed = entries.filter(([claimed]) => claimed === 0).length;
    this.resends.refund(user, reserved - listed, Date.now());
    // Cut short with more to claim: the rest in other scripts, after this backlog has gone out.
    return { nodes, pending, entries, pumpAfter: entries.length - listed >= PUMP_CLAIMS };
  }

  private script<T>(source: string, args: Array<string | number>): Promise<T> {
    return this.parts.scripts.run(source, args) as Promise<T>;
  }
}

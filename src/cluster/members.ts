/**
 * This node's members as the shards report them (MEMBERSHIP, connections closing): this node's
 * view (LocalPresence), the group channels it hears (by interest), the members in Redis (for
 * `any` and presence across nodes), and the presence events of groups.ts. What one connection
 * asks is done in the order asked: the answer to a join (JOINED) goes out once the node hears
 * the group from every node, so a pub sent anywhere after the `joined` reaches the member.
 */
import type { Logger } from '../util/logger.js';
import type { Channels } from './channels.js';
import type { GroupPresence } from '../broker/group-presence.js';
import type { ClusterMessaging } from './messaging.js';
import type { ClusterPresence, LocalPresence } from './presence.js';

export interface ClusterMembersParts {
  local: LocalPresence;
  channels: Channels;
  messaging: ClusterMessaging;
  presence: ClusterPresence;
  /** This node's presence events (groups.ts). */
  events: GroupPresence;
  log: Logger;
  /** Redis is reachable and this node is in the cluster (not draining): presence is written. */
  writesPresence(): boolean;
}

export class ClusterMembers {
  /** Per connection, what it asked of the node (joins and leaves, and the answers to them), in order. */
  private readonly owed = new Map<string, Promise<void>>();

  constructor(private readonly parts: ClusterMembersParts) {}

  /** MEMBERSHIP: `sid` joined (`watch`: it wants presence events) or left `group`. */
  membership(sid: string, group: string, joined: boolean, weight: number, watch: boolean): void {
    this.inOrder(sid, joined ? this.join(sid, group, weight, watch) : this.leave(sid, group));
  }

  /**
   * Runs `answer` once what `sid` asked before is done (and if it is still connected); what it
   * asks next waits for the promise `answer` returns (a history join answered from Redis).
   */
  answer(sid: string, answer: () => Promise<void> | void): void {
    this.inOrder(sid, null, answer);
  }

  /** The connection closed (or its shard died). */
  offline(sid: string): void {
    const { local, presence } = this.parts;
    const conn = local.bySid.get(sid);
    if (!conn) return;
    for (const group of [...conn.groups]) void this.leave(sid, group);
    const gone = local.offline(sid);
    this.owed.delete(sid);
    if (gone && this.parts.writesPresence()) presence.userCount(gone.conn.user, gone.left).catch(() => {});
  }

  /**
   * Resolves once the node hears `group` from every node and the member is recorded (or at once
   * without Redis). A member's join again only says whether it `watch`es presence events.
   */
  private join(sid: string, group: string, weight: number, watch: boolean): Promise<void> {
    const { local, events, channels, messaging } = this.parts;
    const conn = local.bySid.get(sid);
    if (!conn) return Promise.resolve();
    if (weight > 0) conn.weight = weight;
    const watched = conn.watching?.has(group) ?? false;
    if (watch) (conn.watching ??= new Set()).add(group);
    else conn.watching?.delete(group);
    if (conn.groups.has(group)) {
      if (watch !== watched) events.watch(group, watch ? 1 : -1);
      return Promise.resolve();
    }
    events.joined(group, conn.user, watch);
    const first = local.join(sid, group);
    const waits: Promise<unknown>[] = [];
    waits.push(first ? channels.want(group) : channels.heard(group));
    if (this.parts.writesPresence()) waits.push(messaging.joined(sid, group, conn.user, conn.weight).catch(() => {}));
    return Promise.all(waits).then(() => {});
  }

  private leave(sid: string, group: string): Promise<void> {
    const { local, events, channels, presence } = this.parts;
    const conn = local.bySid.get(sid);
    if (!conn?.groups.has(group)) return Promise.resolve();
    events.left(group, conn.user, conn.watching?.delete(group) ?? false);
    const last = local.leave(sid, group);
    if (last) channels.unwant(group);
    if (this.parts.writesPresence()) presence.left(group, sid, last).catch(() => {});
    return Promise.resolve();
  }

  /** What connection `sid` asked is done in the order asked: `answer` runs once `done` and everything before it are. */
  private inOrder(sid: string, done: Promise<void> | null, answer?: () => Promise<void> | void): void {
    const previous = this.owed.get(sid);
    if (previous === undefined && answer === undefined) {
      if (done !== null) this.chain(sid, done);
      return;
    }
    this.chain(
      sid,
      (previous ?? Promise.resolve())
        .then(() => done)
        .then(() => {
          if (answer === undefined || !this.parts.local.bySid.has(sid)) return;
          try {
            return answer();
          } catch (err) {
            this.parts.log.error({ code: 'E_INTERNAL', err }, 'cluster: answering a group op failed');
          }
        }),
    );
  }

  private chain(sid: string, next: Promise<void>): void {
    const settled = next.then(() => {
      if (this.owed.get(sid) === settled) this.owed.delete(sid);
    });
    this.owed.set(sid, settled);
  }
}

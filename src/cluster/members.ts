/**
 * This node's members as the shards report them (MEMBERSHIP, connections closing): this node's
 * view (LocalPresence), the group channels it hears (by interest), the members in Redis (for
 * `any` and presence across nodes), and the presence events of groups.ts. What one connection
 * asks is done in the order asked: the answer to a join (JOINED) goes out once the node hears
 * the group from every node, so a pub sent anywhere after the `joined` reaches the member; the
 * answer to a leave (LEFT) once the member is out of Redis, so presence read after it is exact.
 * One connection's member writes to Redis (JOIN, LEAVE) run one after the other, so that a
 * leave never overtakes the join it undoes, even when the join waits for the group's channel.
 */
import type { Logger } from '../util/logger.js';
import type { Channels } from './channels.js';
import type { ClusterMessaging } from './messaging.js';
import type { ClusterPresence, LocalPresence } from './presence.js';
import type { PresenceEvents } from './presence-events.js';

export interface ClusterMembersParts {
  local: LocalPresence;
  channels: Channels;
  messaging: ClusterMessaging;
  presence: ClusterPresence;
  /** The presence events of this node's watchers (groups.ts). */
  events: PresenceEvents;
  /** The last member of `group` on this node left. */
  left(group: string): void;
  log: Logger;
  /** Redis is reachable and this node is in the cluster (not draining): presence is written. */
  writesPresence(): boolean;
}

export class ClusterMembers {
  /** Per connection, what it asked of the node (joins and leaves, and the answers to them), in order. */
  private readonly owed = new Map<string, Promise<void>>();
  /** Per connection, its member writes to Redis not yet done. */
  private readonly writes = new Map<string, Promise<void>>();

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
    this.parts.messaging.connections.closed(sid);
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
    if (watch !== watched) events.watch(group, watch ? 1 : -1);
    if (conn.groups.has(group)) return Promise.resolve();
    const first = local.join(sid, group);
    const heard = first ? channels.want(group) : channels.heard(group);
    if (!this.parts.writesPresence()) return heard;
    // A watcher hears its own user's join: Redis tells it on the group's channel, which this
    // node must be subscribed to before the JOIN script runs (one more round trip, watchers only).
    const written = this.write(sid, () => (watch ? heard : Promise.resolve()).then(() => (this.parts.writesPresence() ? messaging.joined(sid, group, conn.user, conn.weight) : undefined)));
    return Promise.all([heard, written]).then(() => {});
  }

  private leave(sid: string, group: string): Promise<void> {
    const { local, events, channels, presence } = this.parts;
    const conn = local.bySid.get(sid);
    if (!conn?.groups.has(group)) return Promise.resolve();
    if (conn.watching?.delete(group)) events.watch(group, -1);
    const last = local.leave(sid, group);
    if (last) {
      channels.unwant(group);
      this.parts.left(group);
    }
    // LEFT waits for the write: a presence read after it must not still list the connection.
    return this.parts.writesPresence() ? this.write(sid, () => presence.left(group, sid, last)) : Promise.resolve();
  }

  /**
   * Runs `next` once the connection's earlier member writes are done, if presence is still
   * written then: a drain may have begun meanwhile, and a join written after the node left the
   * cluster would list its member until the node stops. Never rejects (unreachable: the resync
   * writes it all again).
   */
  private write(sid: string, next: () => Promise<unknown>): Promise<void> {
    const done = (this.writes.get(sid) ?? Promise.resolve()).then(() => (this.parts.writesPresence() ? next() : undefined)).then(
      () => {},
      () => {},
    );
    this.writes.set(sid, done);
    void done.then(() => {
      if (this.writes.get(sid) === done) this.writes.delete(sid);
    });
    return done;
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

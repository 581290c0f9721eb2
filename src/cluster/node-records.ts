/**
 * What a cluster node does with each record its shards send (src/link/records.ts): the same
 * records the LMDB broker takes, answered from Redis. Apart from node.ts, which wires the
 * node's parts and follows Redis coming and going.
 */
import { serveDlqRequest } from '../broker/dlq-admin.js';
import type { MessageIds } from '../broker/ids.js';
import { connectionCapRefusal } from '../broker/presence.js';
import type { RingShardLink } from '../broker/ring-link.js';
import type { Config } from '../config/schema.js';
import { ToBroker } from '../link/records.js';
import type { Logger } from '../util/logger.js';
import type { RedisDeadLetters } from './dead-letters.js';
import type { ClusterGroups } from './groups.js';
import type { ClusterIntake, Reply } from './intake.js';
import type { ClusterMembers } from './members.js';
import type { ClusterMessaging } from './messaging.js';
import type { LocalPresence } from './presence.js';
import type { ClusterPubs } from './pubs.js';
import type { ClusterStats } from './stats.js';

export interface NodeRecordParts {
  config: Config;
  link: RingShardLink;
  log: Logger;
  stats: ClusterStats;
  local: LocalPresence;
  intake: ClusterIntake;
  messaging: ClusterMessaging;
  members: ClusterMembers;
  groups: ClusterGroups;
  pubs: ClusterPubs;
  deadLetters: RedisDeadLetters;
  ids: MessageIds;
  /** The node's drain began (it claims nothing for a new connection). */
  draining(): boolean;
}

export class NodeRecords {
  constructor(private readonly parts: NodeRecordParts) {}

  onRecord(shard: number, kind: number, f: unknown[]): void {
    // Acks read just before go to Redis first: scripts keep the order of the records behind them.
    if (kind !== ToBroker.ACK) this.parts.messaging.flushAcks();
    try {
      switch (kind) {
        case ToBroker.SEND: {
          const [sid, ref, from, to, data, pri, at, type, receivedAt] = f as [string, string | null, string, string, string, number, number, string | null, number | undefined];
          return this.parts.intake.accept({ target: `u:${to}`, from, group: null, data, pri, at, strategy: null }, type, this.replyTo(shard, sid, ref), true, receivedAt);
        }
        case ToBroker.ANY: {
          const [sid, ref, from, group, data, pri, strategy, type, receivedAt] = f as [string, string | null, string, string, string, number, string | null, string | null, number | undefined];
          return this.parts.intake.accept({ target: `g:${group}`, from, group, data, pri, at: 0, strategy }, type, this.replyTo(shard, sid, ref), true, receivedAt);
        }
        case ToBroker.ACK: {
          const [sid, user, id] = f as [string, string, string];
          const { link } = this.parts;
          return this.parts.messaging.ack(user, id, {
            unknown: (message) => link.error(shard, sid, 'E_UNKNOWN_ID', message, null, false, id),
            unavailable: (message) => {
              this.parts.stats.cluster_unavailable++;
              link.error(shard, sid, 'E_CLUSTER_UNAVAILABLE', message, null, false, id);
            },
          });
        }
        case ToBroker.PRESENCE: {
          const [sid, user, online] = f as [string, string, number];
          if (online !== 1) return this.parts.members.offline(sid);
          // On this node first (also while Redis is unreachable), then over every node (CONNECT).
          const max = this.parts.config.websocket.limits.max_connections_per_user;
          const refusal = connectionCapRefusal(user, this.parts.local.byUser.get(user)?.size ?? 0, max);
          if (refusal !== null) return this.parts.link.error(shard, sid, 'E_RATE_LIMITED', refusal, null, true);
          const weight = this.parts.config.websocket.delivery.weights.get(user) ?? 1;
          this.parts.local.online({ sid, user, shard, weight, groups: new Set(), watching: null });
          // Draining: a connection that authenticated just before the listen sockets closed claims nothing here.
          if (this.parts.draining()) return this.parts.link.welcome(shard, sid, 0);
          return this.parts.messaging.connections.connect(sid, user, shard, (holding) => {
            this.parts.members.offline(sid);
            this.parts.link.error(shard, sid, 'E_RATE_LIMITED', connectionCapRefusal(user, holding, max, ' on the cluster\'s nodes')!, null, true);
          });
        }
        case ToBroker.MEMBERSHIP: {
          const [sid, group, joined, weight, watch] = f as [string, string, number, number, number?];
          return this.parts.members.membership(sid, group, joined === 1, weight, watch === 1);
        }
        case ToBroker.GROUP_JOIN:
        case ToBroker.GROUP_LEAVE:
          // Answered once the node hears the group from every node (the MEMBERSHIP before it is done).
          return this.parts.members.answer(f[0] as string, () => this.parts.groups.onRecord(shard, kind, f));
        case ToBroker.PRESENCE_QUERY:
        case ToBroker.HISTORY:
          return void this.parts.groups.onRecord(shard, kind, f);
        case ToBroker.PUB: {
          const [sid, ref, from, group, data, pri, type, receivedAt] = f as [string, string | null, string, string, string, number, string | null, number?];
          const reply = this.replyTo(shard, sid, ref);
          const ok = (id: string, offset?: number): void => void (ref !== null && reply.ok(id, offset));
          return this.parts.pubs.publish(this.parts.ids.nextPubId(), from, group, data, pri, type, { ok, fail: reply.fail }, receivedAt ?? 0);
        }
        case ToBroker.CLUSTER_PUB: {
          const [group, frame, sid, ref, id] = f as [string, Uint8Array, string?, string?, string?];
          // Delivered on this node by its shard; its publisher (with a ref) is answered once Redis took it.
          if (sid === undefined) return void this.parts.pubs.publishOut(group, frame);
          return this.parts.pubs.publishAnswered(group, frame, id!, this.replyTo(shard, sid, ref ?? null));
        }
        case ToBroker.ADMIN: {
          const [requestId, method, path] = f as [number, string, string];
          const { link, log } = this.parts;
          const reply = (status: number, body: string): void => link.adminReply(shard, requestId, status, body);
          const failed = (err: unknown): void => log.error({ code: 'E_INTERNAL', err }, 'admin reply failed');
          return serveDlqRequest(method, path, this.parts.deadLetters, (letter) => this.parts.intake.requeue(letter), reply, failed, link.maxFrameBytes);
        }
      }
    } catch (err) {
      this.parts.log.error({ code: 'E_INTERNAL', err, kind, shard }, 'cluster node record failed');
    }
  }

  private replyTo(shard: number, sid: string, ref: string | null): Reply {
    const { link } = this.parts;
    return { ok: (id, offset) => link.senderAck(shard, sid, ref, id, offset), fail: (code, message) => link.error(shard, sid, code, message, ref) };
  }
}

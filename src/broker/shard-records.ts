/**
 * What the shards ask of the broker: each record (fields as src/link/records.ts lists them for
 * ToBroker) read and handed to the part that handles it (intake.ts, presence.ts, delivery.ts,
 * dlq-admin.ts, group-requests.ts), with the answer addressed to the connection that asked; an
 * ack is checked and settled here. Apart from broker.ts, which builds the parts and serves the
 * embedding API, the broker's other way in.
 */
import type { Config } from '../config/schema.js';
import { ToBroker } from '../link/records.js';
import { Latency, type LatencyRecorder } from '../metrics/latencies.js';
import type { MessageStore } from '../store/store.js';
import type { Logger } from '../util/logger.js';
import type { BrokerStats } from './broker.js';
import type { Delivery } from './delivery.js';
import { serveDlqRequest, type RenderLetters } from './dlq-admin.js';
import type { GroupRequests } from './group-requests.js';
import type { MessageIds } from './ids.js';
import type { Intake, Reply } from './intake.js';
import { connectionCapRefusal, type Presence } from './presence.js';
import { State, type Entry, type Queues } from './queues.js';
import type { ShardLink } from './shard-link.js';
import type { UnsavedWrites } from './unsaved-writes.js';

export interface ShardRecordParts {
  /** Read for limits.max_connections_per_user. */
  limits: Config['websocket']['limits'];
  link: ShardLink;
  store: MessageStore;
  queues: Queues;
  presence: Presence;
  ids: MessageIds;
  intake: Intake;
  route: Delivery;
  /** The records about groups (GROUP_JOIN, GROUP_LEAVE, PRESENCE_QUERY, HISTORY). */
  groups: GroupRequests;
  unsaved: UnsavedWrites;
  counters: BrokerStats;
  log: Logger;
  /** Where the ack latency (delivered → acknowledged) is recorded. */
  latency?: LatencyRecorder;
  /** How a dead-letter page's letters become JSON text (BrokerOptions.renderDeadLetters). */
  renderDeadLetters?: RenderLetters;
  /** Takes an entry out of memory (queues and timers). */
  unlink(entry: Entry): void;
}

export class ShardRecords {
  constructor(private readonly parts: ShardRecordParts) {}

  /** One record from `shard`; a record that fails is logged, never thrown back at the link. */
  onRecord(shard: number, kind: number, f: unknown[]): void {
    const { intake, presence, route, link } = this.parts;
    try {
      switch (kind) {
        case ToBroker.SEND: {
          const [sid, ref, from, to, data, pri, at, type, receivedAt] = f as [string, string | null, string, string, string, number, number, string | null, number | undefined];
          return intake.accept({ target: `u:${to}`, from, group: null, data, pri, at, strategy: null }, type, this.replyTo(shard, sid, ref), true, receivedAt);
        }
        case ToBroker.ANY: {
          const [sid, ref, from, group, data, pri, strategy, type, receivedAt] = f as [string, string | null, string, string, string, number, string | null, string | null, number | undefined];
          return intake.accept({ target: `g:${group}`, from, group, data, pri, at: 0, strategy }, type, this.replyTo(shard, sid, ref), true, receivedAt);
        }
        case ToBroker.ACK: {
          const [sid, user, id] = f as [string, string, string];
          return this.ack(shard, sid, user, id);
        }
        case ToBroker.PRESENCE: {
          const [sid, user, online] = f as [string, string, number];
          if (!online) return presence.offline(sid);
          const refusal = connectionCapRefusal(user, presence.connectionsOf(user)?.size ?? 0, this.parts.limits.max_connections_per_user);
          if (refusal !== null) return link.error(shard, sid, 'E_RATE_LIMITED', refusal, null, true);
          return route.online(sid, user, shard);
        }
        case ToBroker.MEMBERSHIP: {
          const [sid, group, joined, weight, watch] = f as [string, string, number, number, number | undefined];
          if (joined !== 1) return presence.leave(sid, group);
          if (presence.join(sid, group, weight, watch === 1)) route.groupJoined(group);
          return;
        }
        case ToBroker.PUB: {
          const [sid, ref, from, group, data, pri, type, receivedAt] = f as [string, string | null, string, string, string, number, string | null, number | undefined];
          const id = this.parts.ids.nextPubId();
          const reply = this.replyTo(shard, sid, ref);
          // A pub is acknowledged only when it asked to be (it has a ref), as on the shard's fast path.
          const ok = (pubId: string, offset?: number): void => void (ref !== null && reply.ok(pubId, offset));
          return intake.publish(id, from, group, data, pri, type, { ok, fail: reply.fail }, receivedAt ?? 0);
        }
        case ToBroker.ADMIN: {
          const [requestId, method, path] = f as [number, string, string];
          const reply = (status: number, body: string): void => link.adminReply(shard, requestId, status, body);
          const failed = (err: unknown): void => this.parts.log.error({ code: 'E_INTERNAL', err }, 'admin reply failed');
          return serveDlqRequest(method, path, this.parts.store, (letter) => intake.requeue(letter), reply, failed, link.maxFrameBytes, this.parts.renderDeadLetters);
        }
        default:
          this.parts.groups.onRecord(shard, kind, f);
      }
    } catch (err) {
      this.parts.log.error({ code: 'E_INTERNAL', err, kind, shard }, 'broker record failed');
    }
  }

  private replyTo(shard: number, sid: string, ref: string | null): Reply {
    return {
      ok: (id, offset) => this.parts.link.senderAck(shard, sid, ref, id, offset),
      fail: (code, message) => this.parts.link.error(shard, sid, code, message, ref),
    };
  }

  /** Only a delivered message awaiting its ack can be acknowledged, and only by its recipient (for `any`: the member holding it). */
  private ack(shard: number, sid: string, user: string, id: string): void {
    const { queues, store } = this.parts;
    const entry = queues.get(id);
    const mine = entry !== undefined && entry.state === State.INFLIGHT && (entry.m.group === null ? entry.m.target === `u:${user}` : entry.holder === user);
    if (!mine) return this.parts.link.error(shard, sid, 'E_UNKNOWN_ID', `no message ${id} awaits your ack (unknown, not delivered yet, already acknowledged, or not yours)`, null, false, id);
    this.parts.counters.acked++;
    this.parts.latency?.since(Latency.ack, entry.deliveredAt);
    this.parts.unlink(entry);
    const m = entry.m;
    void this.parts.unsaved.write(() => store.remove(m));
  }
}

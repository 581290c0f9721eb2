/**
 * Messages a script claimed, to the connections they are for: this node's through LocalDelivery
 * (local-delivery.ts), another node's as records on its channel (channels.ts: one per message,
 * or a share of a backlog as one record to a node that takes them), and the records other nodes
 * send here. Each claimed delivery is counted, and its redelivery swept at its deadline.
 */
import type { ShardLink } from '../broker/shard-link.js';
import type { Config } from '../config/schema.js';
import { encodeStoredMsg, storedMsgPriority } from '../protocol/json-codec.js';
import type { Logger } from '../util/logger.js';
import { NodeRecord, type BatchEntry, type Channels } from './channels.js';
import { LocalDelivery, outgoing, type Outgoing } from './local-delivery.js';
import { RecordWaits } from './record-waits.js';
import type { ClusterPresence, LocalPresence } from './presence.js';
import { logCommandFailure } from './redis.js';
import type { ClusterStats } from './stats.js';

/** Fields of a claimed message, as the scripts return them; `deadline`: its ack deadline (epoch ms). */
export type Fields = [id: string, from: string, group: string, data: string, pri: string, ts: string, attempts: string, deadline: number];

export interface ClaimedDeliveryParts {
  config: Config;
  node: string;
  link: ShardLink;
  channels: Channels;
  presence: ClusterPresence;
  local: LocalPresence;
  stats: ClusterStats;
  log: Logger;
  /** Whether Redis is reachable now (a refusal then costs no round trip). */
  up(): boolean;
  /** A message this node stored or delivered falls due at `at` (epoch ms: its schedule, or its ack deadline): sweep then. */
  dueAt(at: number): void;
}

export class ClaimedDelivery {
  /** This node's connections: what they hold unacknowledged, and the connections whose backlog is on its way. */
  readonly here: LocalDelivery;
  /** Hand-outs held for other nodes' records (a PUMP's, behind those routes: record-waits.ts). */
  readonly records = new RecordWaits();

  constructor(private readonly parts: ClaimedDeliveryParts) {
    this.here = new LocalDelivery(parts.config, parts.local, parts.link);
  }

  /**
   * A claimed message to every connection of `user`: here directly, elsewhere one record per
   * node (with `receivedAt`, for that node's send latency).
   */
  toUser(user: string, nodes: string[], f: Fields, receivedAt = 0): void {
    this.counted(f);
    const frame = encodeStoredMsg(f[0], f[1], null, f[3], Number(f[4]), Number(f[5]));
    for (const node of nodes) {
      if (node === this.parts.node) this.here.toUser(user, [outgoing(f[0], frame, f[7], Number(f[4]))], receivedAt);
      else this.publish(node, NodeRecord.DELIVER_USER, user, f, frame, receivedAt);
    }
  }

  toMember(node: string, sid: string, f: Fields, receivedAt: number): void {
    this.counted(f);
    const frame = encodeStoredMsg(f[0], f[1], f[2], f[3], Number(f[4]), Number(f[5]));
    if (node === this.parts.node) this.here.toSid(sid, [outgoing(f[0], frame, f[7], Number(f[4]))], receivedAt);
    else this.publish(node, NodeRecord.DELIVER_SID, sid, f, frame, receivedAt);
  }

  /**
   * Messages newly claimed for `user` (a backlog, in queue order), to the user's connections on
   * the other `nodes`: as DELIVER_USER_BATCH records of at most one ring record's bytes to a node
   * that takes them, else one record per message. Returns them as they go out here.
   */
  private shareBacklog(user: string, nodes: readonly string[], claimed: readonly Fields[]): Outgoing[] {
    const messages = claimed.map((f) => {
      this.counted(f);
      return outgoing(f[0], encodeStoredMsg(f[0], f[1], null, f[3], Number(f[4]), Number(f[5])), f[7], Number(f[4]));
    });
    if (messages.length === 0) return messages;
    let entries: BatchEntry[] | undefined;
    for (const node of nodes) {
      if (node === this.parts.node) continue;
      if (!this.parts.presence.takesBatches(node)) {
        claimed.forEach((f, i) => this.publish(node, NodeRecord.DELIVER_USER, user, f, messages[i]!.frame, 0));
        continue;
      }
      entries ??= messages.map(({ id, frame, deadline }): BatchEntry => [id, frame, deadline]);
      this.parts.channels.publishUserBatches(node, user, entries, this.parts.link.maxFrameBytes).catch((err: unknown) => logCommandFailure(this.parts, err, 'deliver'));
    }
    return messages;
  }

  /** A share of a user's backlog from another node (DELIVER_USER_BATCH), in queue order. */
  userBatch(user: string, entries: readonly BatchEntry[]): void {
    this.here.toUser(user, entries.map(([id, frame, deadline]) => outgoing(id, frame, deadline, storedMsgPriority(frame))));
    for (const [id] of entries) this.records.arrived(id);
  }

  /** A delivery record for another node; the receive time only to a node known to take it (channels.ts: an older node's decoder would drop the record). */
  private publish(node: string, kind: number, target: string, f: Fields, frame: string, receivedAt: number): void {
    const timed = this.parts.presence.takesTime(node);
    this.parts.channels.publishNode(node, kind, target, f[0], frame, timed ? receivedAt : 0, timed ? f[7] : 0).catch((err: unknown) => logCommandFailure(this.parts, err, 'deliver'));
  }

  /** A delivery this node claimed: counted, and its redelivery goes out at its deadline (sweeps.ts), not at the next interval sweep. */
  private counted(f: Fields): void {
    this.parts.stats.delivered++;
    if (Number(f[6]) > 1) this.parts.stats.redelivered++;
    this.parts.dueAt(f[7]);
  }

  /**
   * A delivery record from another node. `receivedAt` (0: none): when its sender's shard got
   * the `send`/`any` frame, by that node's clock, for a message routed at once.
   */
  nodeRecord(kind: number, target: string, id: string, frame: string, receivedAt = 0, deadline = 0): void {
    const message = outgoing(id, frame, deadline, storedMsgPriority(frame));
    if (kind === NodeRecord.DELIVER_USER) this.here.toUser(target, [message], receivedAt);
    else if (kind === NodeRecord.DELIVER_SID) this.here.toSid(target, [message], receivedAt);
    this.records.arrived(id);
  }

  /**
   * Deliveries to this node's connections still awaiting their ack (those past their deadline
   * forgotten), and one for each PUMP's hand-out held for records: what a drain waits for.
   */
  inflight(): number {
    return this.here.inflight() + this.records.holding;
  }

  /** Newly claimed messages of `user` to its connections on every node in `nodes`, this one included. */
  backlogToUser(user: string, nodes: readonly string[], fresh: readonly Fields[]): void {
    const messages = this.shareBacklog(user, nodes, fresh);
    if (nodes.includes(this.parts.node)) this.here.toUser(user, messages);
  }
}

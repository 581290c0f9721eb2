/**
 * Redis pub/sub for one node: the channel of each group this node has members of (and only
 * those: routing by interest across nodes), and the node's own channel for deliveries to its
 * connections. A pub costs Redis one PUBLISH, whatever the number of recipients; Redis hands it
 * to each node subscribed to the group, once.
 *
 *   P g:GROUP   [origin length u8][origin node id][msg frame]: the frame is published as it
 *               was encoded on the publishing shard; a node drops its own (its shards had it
 *               over the rings already)
 *   P g:GROUP   of a history group: [0][msg frame with its offset and epoch], published by
 *               Redis itself (history-scripts.ts), which every node with members forwards
 *   P g:GROUP   [0xff]["+user"/"-user" entries, "\n"-separated]: users who joined or left the
 *               group anywhere, published by the presence scripts (presence-scripts.ts); 0xff
 *               is never an origin length (node ids are about 14 bytes)
 *   P n:NODE    a MessagePack array: [NodeRecord.DELIVER_USER, user, id, frame, receivedAt?, deadline?]
 *               or [NodeRecord.DELIVER_SID, sid, id, frame, receivedAt?, deadline?]; a share of a
 *               user's backlog, [NodeRecord.DELIVER_USER_BATCH, user, [[id, frame, deadline], ...]]
 *               (in queue order); or the answer to a join of a history group,
 *               [NodeRecord.HISTORY_JOINED, ...] (history.ts)
 *
 * `receivedAt` (epoch ms, the sender's shard's clock) is when the `send`/`any` frame of a
 * message routed at once arrived: the receiving node's shard records the send latency from it.
 * Versions before it decode a delivery record strictly (exactly four elements, and msgpackr
 * refuses trailing bytes): they would drop a record with a fifth as malformed, and with it the
 * delivery. So a record carries it only to a node that said it takes it (`P nt`, written with
 * each heartbeat: presence.ts); this decoder takes four elements or more and ignores the ones
 * after those it knows, so a later field needs no such care. `deadline` (epoch ms, by Redis's
 * scripts) is the message's ack deadline: the receiving node counts it as awaiting its ack until
 * then (what a drain waits for), a redelivery's being further off than one ack_timeout.
 *
 * A backlog (what a CONNECT claims for a user who has connections on other nodes too) goes to
 * each of those nodes in DELIVER_USER_BATCH records of at most one ring record's bytes (what a
 * node hands its shards in one go), not one record per message. Older decoders would drop such a record as malformed, so it goes only to a node in
 * `P nb` (written with each heartbeat, as `P nt`); another gets one record per message.
 *
 * Per publisher, order holds: one shard's pubs reach the primary over one ring, leave on one
 * connection, and Redis delivers a channel's messages to a subscriber in order.
 */
import { Buffer } from 'node:buffer';
import { Packr } from 'msgpackr';
import type { Redis } from 'ioredis';
import type { Keys } from './keys.js';

export const NodeRecord = { DELIVER_USER: 1, DELIVER_SID: 2, HISTORY_JOINED: 3, DELIVER_USER_BATCH: 4 } as const;

/** One message of a DELIVER_USER_BATCH record: its id, its `msg` frame, its ack deadline (epoch ms; 0: not known). */
export type BatchEntry = [id: string, frame: string, deadline: number];

export interface ChannelHandlers {
  /** A pub from another node to `group`, which has members here. */
  groupPub(group: string, frame: Buffer): void;
  /** A presence record of `group` (the text after the 0xff mark), which has members here. */
  presence(group: string, record: string): void;
  /** A delivery record on this node's channel; `receivedAt` and `deadline` (its ack deadline) 0 when it carries none. */
  nodeRecord(kind: number, target: string, id: string, frame: string, receivedAt: number, deadline: number): void;
  /** A share of `user`'s backlog (DELIVER_USER_BATCH), in queue order. */
  userBatch(user: string, entries: readonly BatchEntry[]): void;
  /** The answer to a join of a history group (its fields after the kind); false: malformed. */
  historyJoined(fields: readonly unknown[]): boolean;
  /** A payload that does not parse (another version, or not ours): dropped, counted. */
  malformed(channel: string): void;
}

const packr = new Packr({ useRecords: false, moreTypes: false });

/** The first byte of a presence record on a group's channel, where a pub has its origin's length. */
export const PRESENCE_MARK = 0xff;

export class Channels {
  /** Groups with members on this node: subscribed, or to be once Redis is back. */
  private readonly wanted = new Set<string>();
  /** Subscriptions of groups sent and not yet confirmed. */
  private readonly subscribing = new Map<string, Promise<void>>();
  private readonly origin: Buffer;
  private readonly nodeChannel: string;
  private readonly groupPrefix: string;

  constructor(
    private readonly subscriber: Redis,
    private readonly commands: Redis,
    private readonly keys: Keys,
    node: string,
    private readonly handlers: ChannelHandlers,
  ) {
    this.origin = Buffer.from(node, 'latin1');
    this.nodeChannel = keys.nodeChannel(node);
    this.groupPrefix = keys.groupChannelPrefix;
    subscriber.on('messageBuffer', (channel: Buffer, message: Buffer) => this.received(channel.toString('latin1'), message));
  }

  /** Subscribes the node's channel and every wanted group's (after connecting, and after an outage). */
  async resubscribe(): Promise<void> {
    const channels = [this.nodeChannel, ...[...this.wanted].map((group) => this.keys.groupChannel(group))];
    // In slices: one SUBSCRIBE with a hundred thousand channels would be one huge command.
    for (let i = 0; i < channels.length; i += 1000) await this.subscriber.subscribe(...channels.slice(i, i + 1000));
  }

  /**
   * The first member of `group` on this node: resolves once the node hears the group's pubs from
   * every node (so `joined` can follow), or at once when Redis is unreachable (then
   * resubscribe() takes it up when it is back).
   */
  want(group: string): Promise<void> {
    this.wanted.add(group);
    // Rejected: unreachable, the member is served on this node meanwhile.
    const done = (): void => {
      if (this.subscribing.get(group) === subscribed) this.subscribing.delete(group);
    };
    const subscribed: Promise<void> = this.subscriber.subscribe(this.keys.groupChannel(group)).then(done, done);
    this.subscribing.set(group, subscribed);
    return subscribed;
  }

  /** Resolves once the node hears `group` (for a further member while the first one's want() is under way). */
  heard(group: string): Promise<void> {
    return this.subscribing.get(group) ?? Promise.resolve();
  }

  /** The last member of `group` here left. */
  unwant(group: string): void {
    this.wanted.delete(group);
    this.subscriber.unsubscribe(this.keys.groupChannel(group)).catch(() => {}); // unreachable: nothing to undo
  }

  /** One PUBLISH for every node with members of `group`. Rejects while Redis is unreachable. */
  publishGroup(group: string, frame: Uint8Array): Promise<number> {
    const payload = Buffer.allocUnsafe(1 + this.origin.length + frame.byteLength);
    payload[0] = this.origin.length;
    this.origin.copy(payload, 1);
    payload.set(frame, 1 + this.origin.length);
    return this.commands.publish(this.keys.groupChannel(group), payload);
  }

  /** A delivery record for `node`; `receivedAt` and `deadline` > 0 only if that node takes them (above). */
  publishNode(node: string, kind: number, target: string, id: string, frame: string, receivedAt = 0, deadline = 0): Promise<number> {
    const record = deadline > 0 ? [kind, target, id, frame, receivedAt, deadline] : receivedAt > 0 ? [kind, target, id, frame, receivedAt] : [kind, target, id, frame];
    return this.commands.publish(this.keys.nodeChannel(node), packr.pack(record));
  }

  /**
   * A share of `user`'s backlog for `node`, which takes DELIVER_USER_BATCH records (above): as
   * few records as hold at most `maxBytes` of frames each (a larger message goes alone).
   */
  publishUserBatches(node: string, user: string, entries: readonly BatchEntry[], maxBytes: number): Promise<unknown> {
    const channel = this.keys.nodeChannel(node);
    // One connection: Redis gets the records, and the node hears them, in this order.
    const records: Array<Promise<number>> = [];
    let start = 0;
    let bytes = 0;
    const flush = (end: number): void => {
      records.push(this.commands.publish(channel, packr.pack([NodeRecord.DELIVER_USER_BATCH, user, entries.slice(start, end)])));
      start = end;
      bytes = 0;
    };
    entries.forEach(([, frame], i) => {
      const size = Buffer.byteLength(frame);
      if (i > start && bytes + size > maxBytes) flush(i);
      bytes += size;
    });
    if (start < entries.length) flush(entries.length);
    return Promise.all(records);
  }

  private received(channel: string, message: Buffer): void {
    if (channel === this.nodeChannel) {
      let fields: unknown;
      try {
        fields = packr.unpack(message);
      } catch {
        return this.handlers.malformed(channel);
      }
      if (Array.isArray(fields) && fields[0] === NodeRecord.DELIVER_USER_BATCH) {
        const [, user, entries] = fields as unknown[];
        if (typeof user !== 'string' || !Array.isArray(entries) || !entries.every(isBatchEntry)) return this.handlers.malformed(channel);
        return this.handlers.userBatch(user, entries);
      }
      if (Array.isArray(fields) && fields[0] === NodeRecord.HISTORY_JOINED) {
        if (!this.handlers.historyJoined(fields.slice(1))) this.handlers.malformed(channel);
        return;
      }
      if (!Array.isArray(fields) || fields.length < 4 || typeof fields[1] !== 'string' || typeof fields[2] !== 'string' || typeof fields[3] !== 'string') {
        return this.handlers.malformed(channel);
      }
      return this.handlers.nodeRecord(fields[0] as number, fields[1], fields[2], fields[3], positiveOr0(fields[4]), positiveOr0(fields[5]));
    }
    if (!channel.startsWith(this.groupPrefix)) return;
    const group = channel.slice(this.groupPrefix.length);
    // Late messages of a group unsubscribed meanwhile have nobody here.
    if (!this.wanted.has(group)) return;
    const originLength = message[0];
    if (originLength === PRESENCE_MARK) return this.handlers.presence(group, message.toString('latin1', 1));
    if (originLength === undefined || message.length < 1 + originLength) return this.handlers.malformed(channel);
    if (originLength === this.origin.length && message.compare(this.origin, 0, originLength, 1, 1 + originLength) === 0) return; // our own pub
    this.handlers.groupPub(group, message.subarray(1 + originLength));
  }
}

/** An optional time field of a record: a positive finite number, else 0 (absent). */
function positiveOr0(value: unknown): number {
  return typeof value === 'number' && value > 0 && Number.isFinite(value) ? value : 0;
}

function isBatchEntry(entry: unknown): entry is BatchEntry {
  return Array.isArray(entry) && typeof entry[0] === 'string' && typeof entry[1] === 'string' && typeof entry[2] === 'number' && entry[2] >= 0 && Number.isFinite(entry[2]);
}

/**
 * How the broker talks to the shards, as an interface: the broker's logic then runs, and is
 * tested, without threads or shared memory. ring-link.ts is the real one (SPSC rings and a
 * doorbell, records from src/link/records.ts); tests use a recorder.
 */
import type { ErrorCode } from '../protocol/errors.js';

/** Inbound: one record from `shard`, its fields in the order src/link/records.ts lists for `kind` (ToBroker). */
export type RecordSink = (shard: number, kind: number, fields: unknown[]) => void;

export interface ShardLink {
  /**
   * The largest frame (UTF-8 bytes) one record can carry to a shard: a delivery, a group
   * message or an admin body. Anything bigger must be split or refused before it is handed over.
   */
  readonly maxFrameBytes: number;
  /**
   * `frame` to every connection of `user` on `shard`. `live` of its messages went out as soon as
   * they were accepted, the earliest having arrived at `arrivedAt` (epochMs(): its shard's
   * receive time): the shard measures the send latency from it.
   */
  deliverToUser(shard: number, user: string, frame: string, arrivedAt?: number, live?: number): void;
  /** `frame` to the one connection `sid` on `shard` (arrivedAt, live: as deliverToUser). */
  deliverToSid(shard: number, sid: string, frame: string, arrivedAt?: number, live?: number): void;
  /** The sender's message is stored (or published): `ack {ref, id}` to connection `sid`, with `offset` for a pub to a group that keeps history. */
  senderAck(shard: number, sid: string, ref: string | null, id: string, offset?: number): void;
  /** `err` to connection `sid`; with `close`, then the close code of `code` (errors.ts). */
  /** `id`: the message id of a refused `ack` (the err frame's `id`). */
  error(shard: number, sid: string, code: ErrorCode, message: string, ref: string | null, close?: boolean, id?: string): void;
  /** `welcome` to connection `sid`, with the number of stored messages about to follow. */
  welcome(shard: number, sid: string, pending: number): void;
  /**
   * `frame` to the local subscribers of `topic` (a group, or presenceTopic(group)) on every
   * shard; `receivedAt`: when the pub reached its shard (epochMs()), for the pub latency.
   */
  groupPub(topic: string, frame: string, receivedAt?: number): void;
  /** `frame` to connection `sid` alone: the answer to its `presence` or `history` op. */
  reply(shard: number, sid: string, frame: string): void;
  /** Asks `shard` for its metrics report; skipped while records already wait for room in its ring (they show a stuck shard as well). */
  requestReport(shard: number): void;
  /**
   * The answer to a join of a history group: the `replay` frames first, then `joined` with the
   * group's `top` offset and `epoch`, and `recovered` (-1: not asked, 0, 1). All of it, or,
   * should the shard's ring be backed up, no replay and recovered 0 (the client reloads).
   */
  groupJoined(shard: number, sid: string, group: string, ref: string | null, replay: readonly string[], top: number, epoch: string, recovered: number): void;
  /**
   * A join of a history group refused with `code` (E_BAD_FRAME unless given; cluster mode:
   * E_CLUSTER_UNAVAILABLE) and `message`; the shard undoes it.
   */
  groupJoinFailed(shard: number, sid: string, group: string, ref: string | null, message: string, code?: ErrorCode): void;
  /** The answer to a leave of a history group: `left`, in order with its joins. */
  groupLeft(shard: number, sid: string, group: string, ref: string | null): void;
  /** The answer to admin request `requestId` that `shard` forwarded. */
  adminReply(shard: number, requestId: number, status: number, bodyJson: string): void;
  /** Starts handing every inbound record to `onRecord`. */
  listen(onRecord: RecordSink): void;
  /** `shard` died: hands over what it wrote last (through onRecord), drops what waited for it. */
  shardDown(shard: number): void;
  /**
   * Hands over (through onRecord) every record the shards wrote before this call: the acks in
   * them, before an ack deadline is counted as missed. Optional: a link that hands records over
   * as they come has nothing waiting.
   */
  catchUp?(): void;
  stop(): void;
}

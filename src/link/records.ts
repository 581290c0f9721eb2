/**
 * The contract of the shard <-> broker rings, imported by both sides (src/link holds the whole
 * link: these records, ./reader.ts and ./queued-writer.ts). A record is
 * [kind u8][MessagePack array of the kind's fields, in the order listed here]. Arrays, not
 * maps: no field names on the wire, and msgpackr packs and unpacks them fastest.
 * Message data travels as the JSON text the client sent (re-serialised once by the shard), so
 * the broker stores and forwards it without parsing it.
 */
import { Packr } from 'msgpackr';

/** Shard -> broker. */
export const ToBroker = {
  /**
   * [sid, ref|null, from, to, dataJson, pri, at(0 = now), type|null, receivedAt?]
   * receivedAt: epochMs() when the shard got the frame (the commit and send latencies).
   */
  SEND: 1,
  /** [sid, ref|null, from, group, dataJson, pri, strategy|null, type|null, receivedAt?] */
  ANY: 2,
  /** [sid, user, id] */
  ACK: 3,
  /** [sid, user, online 1|0]: a connection authenticated (1) or closed (0). */
  PRESENCE: 4,
  /**
   * [sid, group, joined 1|0, weight(0 = none in the token), watch 1|0 (presence events; absent: 0)].
   * Sent when a connection becomes a member, leaves, or re-joins changing `watch`.
   */
  MEMBERSHIP: 5,
  /**
   * [sid, ref|null, from, group, dataJson, pri, type|null, receivedAt?]: a `pub` whose data.type
   * has a processor (type), or to a group that keeps history (the broker gives it its offset).
   * receivedAt: epochMs() when the shard got the frame (the pub latency).
   */
  PUB: 6,
  /** [requestId, method, path] from the admin HTTP API. */
  ADMIN: 7,
  /** The shard's metrics report, every metrics_collection_interval: fields of src/metrics/report.ts. */
  METRICS: 8,
  /**
   * [sid, group, ref|null, sinceOffset (-1: none), sinceEpoch|null]: a `join` of a group that
   * keeps history, after its MEMBERSHIP. The broker answers JOINED in its sequence of the
   * group's messages (replay first), so the shard knows which live messages the connection gets.
   */
  GROUP_JOIN: 9,
  /** [sid, group, ref|null]: a `leave` of a group with history ops in flight (answered LEFT, in order). */
  GROUP_LEAVE: 10,
  /** [sid, group, ref|null, counts 1|0]: the `presence` op (answered REPLY). */
  PRESENCE_QUERY: 11,
  /** [sid, group, ref|null, since, limit (0: history.max_page)]: the `history` op (answered REPLY, or ERROR). */
  HISTORY: 12,
  /** [group, frame bytes]: cluster mode, a `pub` this shard published: for the other nodes. */
  CLUSTER_PUB: 13,
  /** []: a client asked for a metrics document the primary has not rendered from its latest figures (src/metrics/snapshot.ts). */
  METRICS_WANTED: 14,
} as const;

/** Broker -> shard. */
export const ToShard = {
  /** [sid, ref|null, id]: the message is stored; send `ack {ref, id}`. */
  SENDER_ACK: 1,
  /**
   * [user, frame, arrivedAt?, live?]: send `frame` to every connection of `user` on this shard.
   * arrivedAt/live (only when live > 0): `live` messages of the frame are delivered as soon as
   * they were accepted, the earliest having reached its shard at arrivedAt (epochMs()): the send latency.
   */
  DELIVER_USER: 2,
  /** [sid, frame, arrivedAt?, live?]: send `frame` to one connection (arrivedAt/live as DELIVER_USER). */
  DELIVER_SID: 3,
  /** [sid, pending]: send `welcome` with this pending count (deliveries follow). */
  WELCOME: 4,
  /** [sid, code, message, ref|null, close?, id?]: `err`; close: 1 closes the connection with the code's close code; id: a refused `ack`'s message id. */
  ERROR: 5,
  /**
   * [topic, frame, receivedAt?]: publish `frame` to local subscribers of `topic` (a group, or
   * presenceTopic(group) for presence events). receivedAt: when the pub frame reached its shard
   * (epochMs()), for the pub latency.
   */
  GROUP_PUB: 6,
  /** [requestId, status, bodyJson] */
  ADMIN_REPLY: 7,
  /** [sid, frame]: send `frame` to one connection: an answer (presence, history) or a replay batch before JOINED. */
  REPLY: 8,
  /**
   * [sid, group, ref|null, top, epoch, recovered (-1: no since asked, 0, 1), error|null, code?]:
   * the answer to GROUP_JOIN. error: the join is refused with `code` (E_BAD_FRAME, e.g. since
   * past the top; E_CLUSTER_UNAVAILABLE: a node without Redis cannot sequence the group).
   */
  JOINED: 9,
  /** [sid, group, ref|null]: the answer to GROUP_LEAVE. */
  LEFT: 10,
  /**
   * []: send your metrics report (a METRICS record), once per metrics_collection_interval. Over
   * the ring, not as a thread message, so that a shard that stops reading (a hot loop) leaves
   * it unread, and /health shows its link stuck even when no traffic goes its way.
   */
  REPORT: 11,
} as const;

/**
 * The uWS topic of a group's presence events: `!` never appears in a group name (NAME_PATTERN).
 * Not `~`: that marks a topic's msgpack twin (binaryTopic() in src/shard/broadcast.ts), which a
 * presence topic has too (`~!group`).
 */
export function presenceTopic(group: string): string {
  return '!' + group;
}

/** The group a topic of GROUP_PUB is about: the group, or the one whose presence topic it is. */
export function groupOfTopic(topic: string): string {
  return topic.charCodeAt(0) === 0x21 ? topic.slice(1) : topic;
}

/**
 * What a record that carries a frame or a body (DELIVER_USER, DELIVER_SID, GROUP_PUB,
 * ADMIN_REPLY) needs beside it: the kind byte, the array header, a name of at most 128 ASCII
 * characters (or a sid, or a request id and status), the string headers and a delivery's
 * arrivedAt and live numbers (about 15 bytes). So a frame of up
 * to largestRecord(ring) - FRAME_RECORD_OVERHEAD UTF-8 bytes always fits the ring.
 */
export const FRAME_RECORD_OVERHEAD = 256;

const packr = new Packr({ useRecords: false, moreTypes: false });

/** One record: kind byte then the packed fields. */
export function encodeRecord(kind: number, fields: unknown[]): Uint8Array {
  const body = packr.pack(fields);
  const record = new Uint8Array(body.byteLength + 1);
  record[0] = kind;
  record.set(body, 1);
  return record;
}

/** The fields of the record at bytes[at, at+length) (kind at bytes[at]). */
export function decodeFields(bytes: Uint8Array, at: number, length: number): unknown[] {
  return packr.unpack(bytes.subarray(at + 1, at + length)) as unknown[];
}

/** `data.type` when it is a string: the processor key. */
export function typeOfData(data: unknown): string | null {
  if (data !== null && typeof data === 'object' && typeof (data as { type?: unknown }).type === 'string') return (data as { type: string }).type;
  return null;
}


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
  /** [sid, ref|null, from, to, dataJson, pri, at(0 = now), type|null] */
  SEND: 1,
  /** [sid, ref|null, from, group, dataJson, pri, strategy|null, type|null] */
  ANY: 2,
  /** [sid, user, id] */
  ACK: 3,
  /** [sid, user, online 1|0]: a connection authenticated (1) or closed (0). */
  PRESENCE: 4,
  /**
   * [sid, group, joined 1|0, weight(0 = none in the token), reply?, ref?]: with reply 1 (cluster
   * mode) the shard waits for MEMBERSHIP_REPLY before it answers `joined`/`left`.
   */
  MEMBERSHIP: 5,
  /** [sid, ref|null, from, group, dataJson, pri, type]: a `pub` whose data.type has a processor. */
  PUB: 6,
  /** [requestId, method, path] from the admin HTTP API. */
  ADMIN: 7,
  /** The shard's metrics report, every metrics_collection_interval: fields of src/metrics/report.ts. */
  METRICS: 8,
  /** [group, frame bytes]: cluster mode, a `pub` this shard published: for the other nodes. */
  CLUSTER_PUB: 9,
} as const;

/** Broker -> shard. */
export const ToShard = {
  /** [sid, ref|null, id]: the message is stored; send `ack {ref, id}`. */
  SENDER_ACK: 1,
  /**
   * [user, frame, storedAt?, live?]: send `frame` to every connection of `user` on this shard.
   * storedAt/live (only when live > 0): `live` messages of the frame are delivered as their
   * store commit made them ready, the earliest at storedAt (epochMs()): the send latency.
   */
  DELIVER_USER: 2,
  /** [sid, frame, storedAt?, live?]: send `frame` to one connection (storedAt/live as DELIVER_USER). */
  DELIVER_SID: 3,
  /** [sid, pending]: send `welcome` with this pending count (deliveries follow). */
  WELCOME: 4,
  /** [sid, code, message, ref|null] */
  ERROR: 5,
  /** [group, frame]: publish `frame` to local subscribers of `group`. */
  GROUP_PUB: 6,
  /** [requestId, status, bodyJson] */
  ADMIN_REPLY: 7,
  /** [sid, group, joined 1|0, ref|null]: cluster mode: answer `joined` (the node now hears the group's pubs from every node) or `left`. */
  MEMBERSHIP_REPLY: 8,
} as const;

/**
 * What a record that carries a frame or a body (DELIVER_USER, DELIVER_SID, GROUP_PUB,
 * ADMIN_REPLY) needs beside it: the kind byte, the array header, a name of at most 128 ASCII
 * characters (or a sid, or a request id and status), the string headers and a delivery's
 * storedAt and live numbers (about 15 bytes). So a frame of up
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


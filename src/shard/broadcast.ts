/**
 * A group message on its way out: encoded at most once per encoding (JSON text, binary frame,
 * the latter compressed at most once), lazily, when the first recipient of that encoding is
 * found, and never once per recipient. A group's JSON members are subscribed to the uWS topic
 * named after it, its msgpack members to binaryTopic(group).
 *
 * Between shards a broadcast travels encoded (the bytes a ring record carries, ringPayload()):
 * the JSON frame alone while no connection of the process speaks msgpack (the bytes are the
 * same as before msgpack existed), otherwise both frames behind a small header, so that a
 * receiving shard publishes bytes and encodes nothing. A message too large for a ring record
 * in that form travels in one form only, and the receiving shard makes the other.
 */
import { Buffer } from 'node:buffer';
import type { Codec } from '../codec/codec.js';
import { EncodedData } from '../codec/tasks.js';
import { inflateLz4 } from '../codec/lz4.js';
import { encodeGroupMsg } from '../protocol/json-codec.js';
import { readFrame, transcodeJson, writeGroupMsg } from '../protocol/msgpack-codec.js';

/**
 * The topic of a group's msgpack members. `~` is outside NAME_PATTERN, so no group is called
 * that, and a client cannot join it by name.
 */
export function binaryTopic(group: string): string {
  return '~' + group;
}

/** binaryTopic() of a topic given as ASCII bytes (how a ring record carries it). */
export function binaryTopicOf(topic: string | Uint8Array): string {
  return typeof topic === 'string' ? binaryTopic(topic) : '~' + String.fromCharCode(...topic);
}

/**
 * What a broadcast needs to make its binary frame: LZ4 and its threshold, and (when given) the
 * choice of LZ4 by the number of recipients (high compression for many, Codec.deflateFor).
 */
export type BinaryOutput = Pick<Codec, 'deflate' | 'lz4Threshold'> & Partial<Pick<Codec, 'deflateFor'>>;

interface GroupMsg {
  id: string;
  from: string;
  group: string;
  data: unknown;
  pri: number;
  ts: number;
}

const textDecoder = new TextDecoder();

export class Broadcast {
  private jsonForm: Uint8Array | null;
  private binaryForm: Uint8Array | null;

  private constructor(
    private readonly codec: BinaryOutput,
    private readonly msg: GroupMsg | null,
    json: Uint8Array | null,
    binary: Uint8Array | null,
  ) {
    this.jsonForm = json;
    this.binaryForm = binary;
  }

  /** A pub's message; `data` may already be encoded (a frame prepared by the codec pool). */
  static of(codec: BinaryOutput, id: string, from: string, group: string, data: unknown, pri: number, ts: number): Broadcast {
    if (data instanceof EncodedData) return new Broadcast(codec, null, data.forms.json, data.forms.msgpack);
    return new Broadcast(codec, { id, from, group, data, pri, ts }, null, null);
  }

  /** A message already encoded: JSON (from the broker, or a ring record), and its binary frame when known. */
  static encoded(codec: BinaryOutput, json: Uint8Array, binary: Uint8Array | null = null): Broadcast {
    return new Broadcast(codec, null, json, binary);
  }

  /** A message that came from another shard as its binary frame alone (ringPayload()). */
  static binaryOnly(codec: BinaryOutput, binary: Uint8Array): Broadcast {
    return new Broadcast(codec, null, null, binary);
  }

  /** The `msg` frame as UTF-8 JSON, sent as a text frame. */
  json(): Uint8Array {
    if (this.jsonForm !== null) return this.jsonForm;
    // Without its message: it came as a binary frame alone, which a shard of ours wrote.
    const m = this.msg ?? (readFrame(this.binaryForm!, Infinity, inflateLz4) as unknown as GroupMsg);
    return (this.jsonForm = Buffer.from(encodeGroupMsg(m.id, m.from, m.group, m.data, m.pri, m.ts)));
  }

  /**
   * The `msg` frame as a binary frame, compressed when large. `recipients`: how many
   * connections the first caller sends it to (the compression may depend on it); later
   * callers get the same bytes.
   */
  binary(recipients = 1): Uint8Array {
    if (this.binaryForm !== null) return this.binaryForm;
    const { codec, msg: m } = this;
    const deflate = codec.deflateFor === undefined ? codec.deflate : codec.deflateFor(recipients);
    this.binaryForm =
      m === null
        ? // Only when a shard encoded it before any msgpack connection was there to see it.
          transcodeJson(textDecoder.decode(this.jsonForm!), deflate, codec.lz4Threshold)
        : writeGroupMsg(m.id, m.from, m.group, m.data, m.pri, m.ts, deflate, codec.lz4Threshold);
    return this.binaryForm;
  }
}

/** First byte of a ring payload that carries both forms, or the binary frame alone (a JSON frame starts with `{`). */
const BOTH_FORMS = 0;
const BOTH_HEADER = 5;
const BINARY_ONLY = 1;

/**
 * What a ring record to another shard carries for `b`, in at most `maxBytes`: its JSON frame,
 * plus its binary frame when `withBinary`. Either form can be several times the other (a
 * control character is 1 byte in msgpack and 6 in JSON; a float 3 bytes in JSON and 9 in
 * msgpack), and the pub that made them was only checked against max_payload in its own: when
 * both do not fit, the JSON frame goes alone, or else the binary frame alone (one of them is
 * about the size of the pub, and a ring takes records up to 2 x max_payload).
 */
export function ringPayload(b: Broadcast, withBinary: boolean, maxBytes = Infinity): Uint8Array {
  const json = b.json();
  if (!withBinary && json.byteLength <= maxBytes) return json;
  const binary = b.binary();
  if (BOTH_HEADER + json.byteLength + binary.byteLength > maxBytes || !withBinary) {
    if (json.byteLength <= maxBytes) return json;
    const out = new Uint8Array(1 + binary.byteLength);
    out[0] = BINARY_ONLY;
    out.set(binary, 1);
    return out;
  }
  const out = new Uint8Array(BOTH_HEADER + json.byteLength + binary.byteLength);
  out[0] = BOTH_FORMS;
  new DataView(out.buffer).setUint32(1, json.byteLength, true);
  out.set(json, BOTH_HEADER);
  out.set(binary, BOTH_HEADER + json.byteLength);
  return out;
}

/** The broadcast a ring payload carries (views into it: publish before the ring space is released). */
export function fromRingPayload(codec: BinaryOutput, payload: Uint8Array): Broadcast {
  if (payload[0] === BINARY_ONLY) return Broadcast.binaryOnly(codec, payload.subarray(1));
  if (payload[0] !== BOTH_FORMS) return Broadcast.encoded(codec, payload);
  const jsonLength = new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getUint32(1, true);
  const jsonEnd = BOTH_HEADER + jsonLength;
  return Broadcast.encoded(codec, payload.subarray(BOTH_HEADER, jsonEnd), payload.subarray(jsonEnd));
}

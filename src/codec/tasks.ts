/**
 * The codec work that may leave a shard: each task is one function, run by a pool thread
 * (workers/codec.ts) or, when the pool is full or the work small, right here on the shard. The
 * two give the same result; only where the CPU is spent differs.
 *
 * - `prepare`: a large client frame, decoded (LZ4, MessagePack or JSON) and validated, with
 *   what the shard will send made ready: a pub's `msg` in JSON and, when some connection speaks
 *   it, as a (compressed) binary frame; the data of a send/any as JSON text for the broker.
 * - `transcode`: a server frame in JSON text (a stored message or a backlog `batch` from the
 *   broker) as a binary frame, compressed when large.
 * - `deadLetters`: a chunk of a dead-letter page (the admin API's export), each letter as its
 *   item's JSON text, for the primary.
 */
import { renderDeadLetters } from '../broker/dead-letter-view.js';
import { typeOfData } from '../link/records.js';
import type { ClientFrame, FrameError } from '../protocol/frames.js';
import { decodeJson, encodeGroupMsgJson } from '../protocol/json-codec.js';
import { decodeMsgpack, transcodeJson, writeGroupMsg } from '../protocol/msgpack-codec.js';
import { matchesHistory } from '../shared/history-patterns.js';
import type { DeadLetter } from '../store/messages.js';
import { deflateLz4, inflateLz4 } from './lz4.js';

/** The fields of the `msg` a pub becomes, fixed when the shard took the frame. */
export interface MsgEnvelope {
  id: string;
  from: string;
  ts: number;
}

export interface PrepareTask {
  kind: 'prepare';
  /** The frame as received (a copy the task owns). */
  bytes: Uint8Array;
  isBinary: boolean;
  /** The connection speaks ocs.v1.msgpack. */
  msgpack: boolean;
  maxPayload: number;
  /** null while the connection has no user (then the frame can only be `auth`). */
  envelope: MsgEnvelope | null;
  /** Encode a pub's binary form too: some connection of the process speaks msgpack. */
  msgpackForm: boolean;
  /** Binary frames of at least this many bytes are LZ4-compressed (Infinity: never). */
  lz4Threshold: number;
  /** `data.type` values with a processor: such a pub goes to the broker as JSON text. */
  processorTypes: readonly string[];
  /** websocket.history's patterns: a pub to a group that keeps history goes to the broker as JSON text. */
  historyPatterns: readonly string[];
}

export interface TranscodeTask {
  kind: 'transcode';
  json: string;
  lz4Threshold: number;
}

export interface DeadLettersTask {
  kind: 'deadLetters';
  letters: DeadLetter[];
}

export type CodecTask = PrepareTask | TranscodeTask | DeadLettersTask;

/** What a prepared frame's `data` became: encoded, so the shard never touches the value. */
export interface EncodedForms {
  /** pub: its `msg` frame as UTF-8 JSON. */
  json: Uint8Array | null;
  /** pub: its `msg` frame as a binary frame, when asked for. */
  msgpack: Uint8Array | null;
  /** send, any, and a pub with a processor: `data` as JSON text. */
  dataJson: string | null;
  /** `data.type` when a string (the processor key). */
  type: string | null;
}

export interface PrepareResult {
  kind: 'prepare';
  /** The frame without its `data` (it is in `forms`), or the refusal. */
  frame: ClientFrame | FrameError;
  forms: EncodedForms | null;
}

export interface TranscodeResult {
  kind: 'transcode';
  frame: Uint8Array;
}

export interface DeadLettersResult {
  kind: 'deadLetters';
  items: string[];
}

export type CodecResult = PrepareResult | TranscodeResult | DeadLettersResult;

const utf8 = new TextEncoder();

export function runTask(task: CodecTask): CodecResult {
  switch (task.kind) {
    case 'prepare':
      return prepare(task);
    case 'transcode':
      return { kind: 'transcode', frame: transcode(task) };
    case 'deadLetters':
      return { kind: 'deadLetters', items: renderDeadLetters(task.letters) };
  }
}

export function transcode(task: TranscodeTask): Uint8Array {
  return transcodeJson(task.json, task.lz4Threshold === Infinity ? null : deflateLz4, task.lz4Threshold);
}

export function prepare(task: PrepareTask): PrepareResult {
  const frame = task.msgpack ? decodeMsgpack(task.bytes, task.isBinary, task.maxPayload, inflateLz4) : decodeJson(task.bytes, task.isBinary);
  if (frame.op !== 'pub' && frame.op !== 'send' && frame.op !== 'any') return { kind: 'prepare', frame, forms: null };
  const data = frame.data;
  const type = typeOfData(data);
  const forms: EncodedForms = { json: null, msgpack: null, dataJson: JSON.stringify(data), type };
  // A pub without a processor is published by the shard as these frames; one with a processor
  // (decided here, on the types the shard knew when it sent the task) or to a group that keeps
  // history goes to the broker as JSON text.
  const processed = type !== null && task.processorTypes.includes(type);
  if (frame.op === 'pub' && task.envelope !== null && !processed && !matchesHistory(task.historyPatterns, frame.group)) {
    const { id, from, ts } = task.envelope;
    forms.json = utf8.encode(encodeGroupMsgJson(id, from, frame.group, forms.dataJson!, frame.pri, ts));
    if (task.msgpackForm) forms.msgpack = writeGroupMsg(id, from, frame.group, data, frame.pri, ts, task.lz4Threshold === Infinity ? null : deflateLz4, task.lz4Threshold);
    forms.dataJson = null;
  }
  return { kind: 'prepare', frame: { ...frame, data: undefined }, forms };
}

/**
 * A frame's `data` that was prepared by a task: the shard forwards these encodings and never
 * sees the value. (Rebuilt around the plain result on the shard's side of the pool.)
 */
export class EncodedData {
  /** @param msgId the id the shard gave a pub's message before it went to the pool */
  constructor(
    readonly forms: EncodedForms,
    readonly msgId: string | null,
  ) {}
}

/** `data` as the JSON text the broker stores. */
export function jsonTextOf(data: unknown): string {
  return data instanceof EncodedData ? data.forms.dataJson! : JSON.stringify(data);
}

/** `data.type` when it is a string: the processor key. */
export function dataTypeOf(data: unknown): string | null {
  return data instanceof EncodedData ? data.forms.type : typeOfData(data);
}

/**
 * The buffers of a result to move to the thread that asked. A frame that is a view into a
 * larger buffer (msgpackr's, which it reuses for the frames after) is first copied into one of
 * its own: moved, the whole larger buffer would go; cloned, it would be copied whole.
 */
export function transferablesOf(result: CodecResult): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  const own = (bytes: Uint8Array | null): Uint8Array | null => {
    if (bytes === null || !(bytes.buffer instanceof ArrayBuffer)) return bytes;
    // Not slice(): on a Buffer (what msgpackr returns in Node.js) it is another view.
    const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : Uint8Array.from(bytes);
    out.push(whole.buffer as ArrayBuffer);
    return whole;
  };
  if (result.kind === 'transcode') result.frame = own(result.frame)!;
  else if (result.kind === 'prepare' && result.forms !== null) {
    result.forms.json = own(result.forms.json);
    result.forms.msgpack = own(result.forms.msgpack);
  }
  return out;
}

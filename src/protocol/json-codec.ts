/**
 * The `ocs.v1.json` encoding: one UTF-8 text frame, one JSON object.
 * Server frames are assembled as strings by hand: names and ids are restricted to characters
 * that need no JSON escaping (frames.ts NAME_PATTERN), so only `data`, `ref` and messages go
 * through JSON.stringify.
 */
import { Buffer } from 'node:buffer';
import type { ErrorCode, ErrorReason } from './errors.js';
import { frameError, JSON_PROTOCOL, MAX_DEPTH, toClientFrame, type ClientFrame, type FrameError } from './frames.js';
import type { WelcomeLimits } from './server-frames.js';

// Defined in frames.ts, which the browser client can load (this module uses Node's Buffer).
export { JSON_PROTOCOL, MAX_DEPTH };
/** Deepest nesting of a frame's `data` (the frame object around it is one level). */
export const MAX_DATA_DEPTH = MAX_DEPTH - 1;

/** Whether `data` nests deeper than a frame may carry it: such data is refused on the way in. */
export function dataTooDeep(data: unknown): boolean {
  return scan(data, MAX_DATA_DEPTH) === TOO_DEEP;
}

/**
 * Decodes a frame's bytes without a Buffer view around them (a view is an object and a
 * constructor call on every frame). A leading BOM is kept, as Buffer's toString keeps it, so
 * that JSON.parse refuses it as before; invalid UTF-8 becomes U+FFFD either way.
 */
const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });

export function decodeJson(message: ArrayBuffer | Uint8Array, isBinary: boolean): ClientFrame | FrameError {
  if (isBinary) return frameError('E_BAD_FRAME', `binary frames need the ocs.v1.msgpack protocol; this connection speaks ${JSON_PROTOCOL}`);
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(message));
  } catch {
    return frameError('E_BAD_FRAME', 'frame is not valid JSON');
  }
  const problem = scan(value, MAX_DEPTH);
  if (problem !== FINE) {
    const ref = (value as { ref?: unknown }).ref;
    const message = problem === TOO_DEEP ? `frame is nested deeper than ${MAX_DEPTH} levels` : 'frame has a number out of range (it parses to Infinity, which has no JSON or MessagePack form)';
    return frameError('E_BAD_FRAME', message, typeof ref === 'string' ? ref : undefined);
  }
  return toClientFrame(value);
}

const FINE = 0;
const TOO_DEEP = 1;
/**
 * A number literal too large for a double (1e400): JSON.parse makes it Infinity, which a JSON
 * member would get as null and a msgpack member as Infinity; refused, as a msgpack client's is.
 */
const NOT_FINITE = 2;

/**
 * Whether `value` nests more than `levels` objects/arrays deep, or holds a number that is not
 * finite. It recurses at most `levels` + 1 deep; a leaf costs one typeof.
 */
function scan(value: unknown, levels: number): typeof FINE | typeof TOO_DEEP | typeof NOT_FINITE {
  if (typeof value !== 'object' || value === null) return typeof value === 'number' && !Number.isFinite(value) ? NOT_FINITE : FINE;
  if (levels === 0) return TOO_DEEP;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const problem = scan(value[i], levels - 1);
      if (problem !== FINE) return problem;
    }
    return FINE;
  }
  for (const key in value) {
    const problem = scan((value as Record<string, unknown>)[key], levels - 1);
    if (problem !== FINE) return problem;
  }
  return FINE;
}

/** `,"ref":…` when the client gave one (any string: it is escaped), else nothing. */
export const refField = (ref: string | undefined): string => (ref === undefined ? '' : `,"ref":${JSON.stringify(ref)}`);

/** `expiresAt`: when the connection's token runs out (epoch ms), omitted when it never does. */
export function encodeWelcome(user: string, sid: string, shard: number, pending: number, expiresAt: number, limits: WelcomeLimits): string {
  const { messagesPerSecond, burst, ackIds } = limits;
  return `{"op":"welcome","user":"${user}","sid":"${sid}","shard":${shard},"pending":${pending}${expiresField(expiresAt)},"limits":{"messagesPerSecond":${messagesPerSecond},"burst":${burst},"ackIds":${ackIds}}}`;
}

/** The answer to an `auth` frame that refreshed the token of an open connection. */
export function encodeAuthAck(ref: string | undefined, expiresAt: number): string {
  return `{"op":"ack"${refField(ref)}${expiresField(expiresAt)}}`;
}

const expiresField = (expiresAt: number): string => (expiresAt === Infinity ? '' : `,"expiresAt":${expiresAt}`);

/**
 * A group message. `data` is stringified once here; the result goes to every subscriber on
 * every shard as the same bytes.
 */
export function encodeGroupMsg(id: string, from: string, group: string, data: unknown, pri: number, ts: number): string {
  return `{"op":"msg","id":"${id}","from":"${from}","group":"${group}","data":${JSON.stringify(data) ?? 'null'},"pri":${pri},"ts":${ts}}`;
}

/**
 * A stored (`send`/`any`) message, `ackReq: true`. `dataJson` is the JSON text of `data`, kept
 * as text from the sender to the store to every recipient: it is never parsed again.
 */
export function encodeStoredMsg(id: string, from: string, group: string | null, dataJson: string, pri: number, ts: number): string {
  const groupField = group === null ? '' : `,"group":"${group}"`;
  return `{"op":"msg","id":"${id}","from":"${from}"${groupField},"data":${dataJson},"pri":${pri},"ts":${ts},"ackReq":true}`;
}

/**
 * The `pri` of a frame encodeStoredMsg made, read back without parsing it (a delivery record from
 * another node carries the frame alone): `pri` follows `data` there, so the last `,"pri":` is the
 * envelope's, whatever the data holds. -1 if it has none.
 */
export function storedMsgPriority(frame: string): number {
  const at = frame.lastIndexOf(',"pri":');
  if (at < 0) return -1;
  const digit = frame.charCodeAt(at + 7) - 48;
  return digit >= 0 && digit <= 3 ? digit : -1;
}

/** Several already-encoded `msg` frames as one `batch` frame, in the given order. */
export function encodeBatch(msgs: readonly string[]): string {
  return `{"op":"batch","msgs":[${msgs.join(',')}]}`;
}

/**
 * `msgs` (complete `msg` frames, in order) as the frames to send: the one frame, or `batch`
 * frames of at most `batchSize` messages, each fitting a ring record of `maxFrameBytes` (a
 * replay of group history; in cluster mode a backlog too).
 */
export function batchFrames(msgs: readonly string[], batchSize: number, maxFrameBytes: number): string[] {
  if (msgs.length <= 1) return [...msgs];
  const frames: string[] = [];
  // `{"op":"batch","msgs":[` and `]}`, and a comma per frame: within FRAME_RECORD_OVERHEAD's slack.
  const maxBytes = maxFrameBytes - 64;
  let batch: string[] = [];
  let bytes = 0;
  for (const msg of msgs) {
    const size = Buffer.byteLength(msg) + 1;
    if (batch.length > 0 && (batch.length >= batchSize || bytes + size > maxBytes)) {
      frames.push(encodeBatch(batch));
      batch = [];
      bytes = 0;
    }
    batch.push(msg);
    bytes += size;
  }
  if (batch.length > 0) frames.push(encodeBatch(batch));
  return frames;
}

/** A group message whose data is already JSON text (processed `pub`, server-side publish). */
export function encodeGroupMsgJson(id: string, from: string, group: string, dataJson: string, pri: number, ts: number): string {
  return `{"op":"msg","id":"${id}","from":"${from}","group":"${group}","data":${dataJson},"pri":${pri},"ts":${ts}}`;
}

export function encodeJoined(group: string, ref: string | undefined): string {
  return `{"op":"joined","group":"${group}"${refField(ref)}}`;
}

export function encodeLeft(group: string, ref: string | undefined): string {
  return `{"op":"left","group":"${group}"${refField(ref)}}`;
}

export function encodeAck(ref: string | undefined, id: string): string {
  return `{"op":"ack"${refField(ref)},"id":"${id}"}`;
}

export function encodePong(t: number, serverTime: number): string {
  return `{"op":"pong","t":${t},"st":${serverTime}}`;
}

/** `id`: the message an `ack` named, when that `ack` is what was refused (the op has no `ref`). */
export function encodeError(code: ErrorCode, message: string, ref?: string, reason?: ErrorReason, id?: string): string {
  return `{"op":"err","code":"${code}","message":${JSON.stringify(message)}${refField(ref)}${reason === undefined ? '' : `,"reason":"${reason}"`}${id === undefined ? '' : `,"id":${JSON.stringify(id)}`}}`;
}

export function encodeFrameError(error: FrameError): string {
  return encodeError(error.code, error.message, error.ref, error.reason);
}

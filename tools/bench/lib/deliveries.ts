// Extracts the benchmark's delivery stamps from ocs.v1 `msg` and `batch` frames by scanning
// bytes (tools/lib/frame-scan.ts). A stamp is the publisher's `data` object
// {"t":<epoch ms>,"s":<seq>,"p":<publisher id>}.
// verifyDeliveries() is the slow, obviously-correct twin; the load generator runs it on a
// sample of frames and reports any disagreement, so the fast path is checked on every run
// against the server under test.
import { FrameKind, frameKind, indexOfBytes, numberEnd, readNumber } from '../../lib/frame-scan.js';

/** Called once per stamped msg: publisher id, its sequence number, send time (epoch ms). */
export type DeliveryCallback = (publisher: number, seq: number, sentAt: number) => void;

const QUOTE = 0x22; // "
const COLON = 0x3a; // :
const CLOSE_BRACE = 0x7d; // }
const KEY_T = 0x74; // t
const KEY_S = 0x73; // s
const KEY_P = 0x70; // p

const DATA_KEY = Buffer.from('"data":{');

/**
 * Calls `onDelivery` for each stamped msg of a `msg` or `batch` frame and says which kind of
 * frame it was.
 *
 * `"data":{` can only be a key followed by an object, and `"t":` only a key. Stamps are flat
 * objects, so the first `}` after `"data":{` closes one. Keys are matched in any order;
 * `"ts":` is not `"t":`. Every `"data":{` of the frame is visited, wherever `op` stands.
 */
export function parseDeliveries(frame: Buffer, onDelivery: DeliveryCallback): FrameKind {
  const kind = frameKind(frame);
  if (kind === FrameKind.Other) return kind;
  const end = frame.length;
  let from = 0;
  for (;;) {
    const dataAt = indexOfBytes(frame, DATA_KEY, from, end);
    if (dataAt < 0) break;
    const objectStart = dataAt + DATA_KEY.length;
    let objectEnd = objectStart;
    while (objectEnd < end && frame[objectEnd] !== CLOSE_BRACE) objectEnd++;
    readStamp(frame, objectStart, objectEnd, onDelivery);
    from = objectEnd;
  }
  return kind;
}

// One stamp's fields, filled by readStamp; module state so that the hot path allocates nothing.
let stampT = Number.NaN;
let stampS = Number.NaN;
let stampP = Number.NaN;

/** Reads the t, s and p keys of the flat object in frame[start, end) and reports them if all are there. */
function readStamp(frame: Buffer, start: number, end: number, onDelivery: DeliveryCallback): void {
  stampT = stampS = stampP = Number.NaN;
  for (let i = start; i + 3 < end; i++) {
    // A one-letter key: "x":
    if (frame[i] !== QUOTE || frame[i + 2] !== QUOTE || frame[i + 3] !== COLON) continue;
    const key = frame[i + 1];
    if (key !== KEY_T && key !== KEY_S && key !== KEY_P) continue;
    const value = readNumber(frame, i + 4, end);
    if (key === KEY_T) stampT = value;
    else if (key === KEY_S) stampS = value;
    else stampP = value;
    i = numberEnd - 1;
  }
  if (!Number.isNaN(stampT) && !Number.isNaN(stampS) && !Number.isNaN(stampP)) onDelivery(stampP, stampS, stampT);
}

/**
 * The reference: JSON.parse the frame and return its stamps, or null for a frame that is not
 * a msg or batch.
 */
export function verifyDeliveries(frame: Buffer): [publisher: number, seq: number, sentAt: number][] | null {
  const value = JSON.parse(frame.toString('utf8')) as { op?: string; msgs?: unknown[]; data?: unknown };
  const msgs = value.op === 'msg' ? [value] : value.op === 'batch' && Array.isArray(value.msgs) ? value.msgs : null;
  if (!msgs) return null;
  const stamps: [number, number, number][] = [];
  for (const msg of msgs) {
    const data = (msg as { data?: { t?: unknown; s?: unknown; p?: unknown } }).data;
    if (data && typeof data.t === 'number' && typeof data.s === 'number' && typeof data.p === 'number') {
      stamps.push([data.p, data.s, data.t]);
    }
  }
  return stamps;
}

/** Whether two stamp lists agree: publisher and seq exactly, the time to a microsecond. */
export function sameStamps(a: readonly (readonly number[])[], b: readonly (readonly number[])[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x[0] !== y[0] || x[1] !== y[1] || !(Math.abs(x[2]! - y[2]!) < 0.001)) return false;
  }
  return true;
}

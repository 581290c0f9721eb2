// Extracts the benchmark's delivery stamps from ocs.v1 `msg` and `batch` frames by scanning
// bytes, without JSON.parse or even decoding to a string: the load generator handles ~100k
// of them per second on one core and must never be the bottleneck. A stamp is the
// publisher's `data` object {"t":<epoch ms>,"s":<seq>,"p":<publisher id>}.
// verifyDeliveries() is the slow, obviously-correct twin; the load generator runs it on a
// sample of frames and reports any disagreement, so the fast path is checked on every run
// against the server under test.

/** Called once per stamped msg: publisher id, its sequence number, send time (epoch ms). */
export type DeliveryCallback = (publisher: number, seq: number, sentAt: number) => void;

export const enum FrameKind {
  /** welcome, joined, err...: parse it as JSON. */
  Other = 0,
  Msg = 1,
  Batch = 2,
}

const QUOTE = 0x22; // "
const COLON = 0x3a; // :
const CLOSE_BRACE = 0x7d; // }
const MINUS = 0x2d; // -
const DOT = 0x2e; // .
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const KEY_T = 0x74; // t
const KEY_S = 0x73; // s
const KEY_P = 0x70; // p

const OP_KEY = Buffer.from('"op":"');
const MSG_VALUE = Buffer.from('msg"');
const BATCH_VALUE = Buffer.from('batch"');
const DATA_KEY = Buffer.from('"data":{');

/**
 * Calls `onDelivery` for each stamped msg of a `msg` or `batch` frame and says which kind of
 * frame it was.
 *
 * Why scanning is safe: inside a JSON string every `"` is escaped, so `"data":{` can only be
 * a key followed by an object, and `"t":` only a key. Stamps are flat objects, so the first
 * `}` after `"data":{` closes one. Keys are matched in any order; `"ts":` is not `"t":`.
 * The frame kind is the value of the first `"op"` key: the top-level one, as servers write
 * `op` first; were it not, every msg would still be found, as all `"data":{` are visited.
 */
export function parseDeliveries(frame: Buffer, onDelivery: DeliveryCallback): FrameKind {
  const end = frame.length;
  const opAt = indexOfBytes(frame, OP_KEY, 0, end);
  if (opAt < 0) return FrameKind.Other;
  const valueAt = opAt + OP_KEY.length;
  const kind = startsWithBytes(frame, MSG_VALUE, valueAt)
    ? FrameKind.Msg
    : startsWithBytes(frame, BATCH_VALUE, valueAt)
      ? FrameKind.Batch
      : FrameKind.Other;
  if (kind === FrameKind.Other) return kind;

  let from = valueAt;
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
/** Where the number last read by readNumber ended. */
let numberEnd = 0;

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
 * Reads a JSON number at `at` by hand: sign, integer digits, fraction digits. Exponents (which
 * JSON.stringify never writes for these magnitudes) fall back to Number(). The result can
 * differ from JSON.parse in the last bit of a fraction, far below the microsecond we record.
 */
function readNumber(frame: Buffer, at: number, end: number): number {
  let i = at;
  const negative = frame[i] === MINUS;
  if (negative) i++;
  let integer = 0;
  let digits = 0;
  while (i < end && frame[i]! >= DIGIT_0 && frame[i]! <= DIGIT_9) {
    integer = integer * 10 + (frame[i]! - DIGIT_0);
    i++;
    digits++;
  }
  let fraction = 0;
  let scale = 1;
  if (i < end && frame[i] === DOT) {
    i++;
    while (i < end && frame[i]! >= DIGIT_0 && frame[i]! <= DIGIT_9) {
      fraction = fraction * 10 + (frame[i]! - DIGIT_0);
      scale *= 10;
      i++;
    }
  }
  numberEnd = i;
  if (digits === 0) return Number.NaN;
  const c = frame[i];
  if (c === 0x65 || c === 0x45 /* e E */) {
    while (i < end && frame[i] !== 0x2c && frame[i] !== CLOSE_BRACE) i++;
    numberEnd = i;
    return Number(frame.toString('latin1', at, i));
  }
  const value = integer + fraction / scale;
  return negative ? -value : value;
}

function startsWithBytes(frame: Buffer, pattern: Buffer, at: number): boolean {
  if (at + pattern.length > frame.length) return false;
  for (let j = 0; j < pattern.length; j++) if (frame[at + j] !== pattern[j]) return false;
  return true;
}

/**
 * First index of `pattern` in frame[from, end), or -1. A plain loop: the needles are short and
 * found within the first hundred bytes, where Buffer.indexOf's call into C++ costs more.
 */
function indexOfBytes(frame: Buffer, pattern: Buffer, from: number, end: number): number {
  const first = pattern[0]!;
  const last = end - pattern.length;
  outer: for (let i = from; i <= last; i++) {
    if (frame[i] !== first) continue;
    for (let j = 1; j < pattern.length; j++) if (frame[i + j] !== pattern[j]) continue outer;
    return i;
  }
  return -1;
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

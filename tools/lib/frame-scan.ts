// Reading ocs.v1 frames as bytes, without JSON.parse or even decoding them to a string: load
// generators receive ~100k messages a second on one core and must never be the bottleneck.
// The broadcast benchmark's delivery stamps (tools/bench/lib/deliveries.ts) and the load
// tester's markers (tools/loadtest/wire.ts) are both found and read with these; each of them
// keeps a JSON.parse twin that checks it.
//
// Why scanning is safe: inside a JSON string every `"` is escaped, so a quoted pattern such
// as `"data":{` or `"LT1|` can only be a key or the start of a string value, never the middle
// of one.

export const enum FrameKind {
  /** welcome, joined, err...: parse it as JSON. */
  Other = 0,
  Msg = 1,
  Batch = 2,
}

const MINUS = 0x2d; // -
const DOT = 0x2e; // .
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const COMMA = 0x2c;
const CLOSE_BRACE = 0x7d; // }

const OP_KEY = Buffer.from('"op":"');
const MSG_VALUE = Buffer.from('msg"');
const BATCH_VALUE = Buffer.from('batch"');

/**
 * The kind of frame, from the value of its first `"op"` key: the top-level one, as servers
 * write `op` first.
 */
export function frameKind(frame: Buffer): FrameKind {
  const opAt = indexOfBytes(frame, OP_KEY, 0, frame.length);
  if (opAt < 0) return FrameKind.Other;
  const valueAt = opAt + OP_KEY.length;
  if (startsWithBytes(frame, MSG_VALUE, valueAt)) return FrameKind.Msg;
  if (startsWithBytes(frame, BATCH_VALUE, valueAt)) return FrameKind.Batch;
  return FrameKind.Other;
}

/**
 * First index of `pattern` in frame[from, end), or -1. A plain loop: the needles are short and
 * found within the first hundred bytes, where Buffer.indexOf's call into C++ costs more.
 */
export function indexOfBytes(frame: Buffer, pattern: Buffer, from: number, end: number): number {
  const first = pattern[0]!;
  const last = end - pattern.length;
  outer: for (let i = from; i <= last; i++) {
    if (frame[i] !== first) continue;
    for (let j = 1; j < pattern.length; j++) if (frame[i + j] !== pattern[j]) continue outer;
    return i;
  }
  return -1;
}

export function startsWithBytes(frame: Buffer, pattern: Buffer, at: number): boolean {
  if (at + pattern.length > frame.length) return false;
  for (let j = 0; j < pattern.length; j++) if (frame[at + j] !== pattern[j]) return false;
  return true;
}

/** Where the number last read by readNumber ended; module state so that the hot path allocates nothing. */
export let numberEnd = 0;

/**
 * Reads a JSON number at `at` by hand: sign, integer digits, fraction digits (NaN when there
 * is no digit); `numberEnd` is then the index after it. Exponents (which JSON.stringify never
 * writes for these magnitudes) fall back to Number(). The result can differ from JSON.parse in
 * the last bit of a fraction, far below the microsecond anything here records.
 */
export function readNumber(frame: Buffer, at: number, end: number): number {
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
    while (i < end && frame[i] !== COMMA && frame[i] !== CLOSE_BRACE) i++;
    numberEnd = i;
    return Number(frame.toString('latin1', at, i));
  }
  const value = integer + fraction / scale;
  return negative ? -value : value;
}

// Extracts the benchmark's delivery stamps from ocs.v1 `msg` and `batch` frames without
// JSON.parse: a receiver handles ~100k of them per second, and the generator must never be
// the bottleneck. Each stamp is the publisher's `data` object {"t":<epoch ms>,"s":<seq>,"p":<id>}.
// verifyDeliveries() is the slow, obviously-correct twin that the load generator runs on a
// sample of frames to prove this parser right on the server under test.

/** Called once per delivered msg: publisher id, its sequence number, send time (epoch ms). */
export type DeliveryCallback = (publisher: number, seq: number, sentAt: number) => void;

/** The frame is not a msg or batch (welcome, joined, err...): parse it as JSON. */
export const NOT_A_DELIVERY = -1;

/**
 * Calls `onDelivery` for each msg in a `msg` or `batch` frame and returns how many msgs with
 * object data there were, or NOT_A_DELIVERY for other frames. A msg whose data object lacks a
 * stamp is counted but not reported.
 *
 * Why this is safe without a JSON parser: inside JSON strings every `"` is escaped, so the
 * byte sequence `"data":{` can only be a key followed by an object, and our stamps are flat
 * objects, so the first `}` after it closes the data object. Keys are looked up inside that
 * span, in any order; `"ts":` does not match `"t":`.
 */
export function parseDeliveries(frame: Buffer, onDelivery: DeliveryCallback): number {
  // latin1 maps bytes 1:1 to chars, so string offsets are byte offsets; it is also the
  // cheapest decoding, and everything we read is ASCII.
  const text = frame.toString('latin1');
  // Test for batch first: the msgs inside a batch may carry "op":"msg" themselves.
  const isBatch = text.indexOf('"op":"batch"') >= 0;
  if (!isBatch && text.indexOf('"op":"msg"') < 0) return NOT_A_DELIVERY;
  let count = 0;
  let from = 0;
  for (;;) {
    const dataAt = text.indexOf('"data":{', from);
    if (dataAt < 0) break;
    count++;
    const objectStart = dataAt + 7;
    const objectEnd = text.indexOf('}', objectStart);
    if (objectEnd < 0) break;
    from = objectEnd;
    const t = numberAfterKey(text, '"t":', objectStart, objectEnd);
    const s = numberAfterKey(text, '"s":', objectStart, objectEnd);
    const p = numberAfterKey(text, '"p":', objectStart, objectEnd);
    if (!Number.isNaN(t) && !Number.isNaN(s) && !Number.isNaN(p)) onDelivery(p, s, t);
    if (!isBatch) break; // a single msg has exactly one data object
  }
  return count;
}

/** The number following `key` within [start, end), or NaN. */
function numberAfterKey(text: string, key: string, start: number, end: number): number {
  const at = text.indexOf(key, start);
  if (at < 0 || at >= end) return Number.NaN;
  let stop = at + key.length;
  // A JSON number ends at ',' '}' or whitespace; no JSON number contains those.
  while (stop < end) {
    const c = text.charCodeAt(stop);
    if (c === 0x2c || c === 0x7d || c === 0x20) break;
    stop++;
  }
  return Number(text.slice(at + key.length, stop));
}

/**
 * The reference: JSON.parse the frame and return its stamps, or null for a non-delivery frame.
 * Used on a sample of frames; any difference from parseDeliveries is reported as a mismatch.
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

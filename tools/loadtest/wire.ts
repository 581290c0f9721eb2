/**
 * What the load tester puts on the wire and how it reads it back cheaply.
 *
 * Every pub and send carries, as its `data` string, a marker the receiver can find without
 * parsing the JSON around it:
 *
 *     LT1|<publisher slot>|<seq>|<due µs>|<sent µs>|xxxx…   (pub: group broadcast)
 *     LD1|<sender slot>|<seq>|<due µs>|<sent µs>|xxxx…      (send: direct message)
 *
 * `due` is when the schedule said the message should leave (latency is counted from it:
 * the coordinated-omission correction), `sent` when it actually left (the uncorrected
 * figure). Both are monoUs() values: sender and receiver are threads of one process.
 * The padding brings `data` to the scenario's message size.
 *
 * A `msg` or `batch` frame is scanned for `"LT1|` with indexOf, which is many times cheaper
 * than JSON.parse on a batch of a few hundred messages. The marker is digits and `|` only,
 * so the JSON encoding of the string is the string itself, and a server may put the fields of
 * `msg` in any order.
 */

export const PUB_MARK = 'LT1|';
export const SEND_MARK = 'LD1|';
const QUOTED_PUB_MARK = '"' + PUB_MARK;

export function padding(bytes: number): string {
  return 'x'.repeat(Math.max(0, bytes));
}

/** The `data` string of a pub or send, padded to about `size` bytes. */
export function makeData(mark: string, slot: number, seq: number, dueUs: number, sentUs: number, pad: string): string {
  return mark + slot + '|' + seq + '|' + Math.round(dueUs) + '|' + Math.round(sentUs) + '|' + pad;
}

/** Length of the marker fields for typical values, to size the padding. */
export const MARKER_OVERHEAD = 4 + 6 + 8 + 17 + 17;

export interface Marker {
  slot: number;
  seq: number;
  dueUs: number;
  sentUs: number;
}

/** Reads a non-negative decimal integer at `i`; returns [value, index after the `|`] or [-1, i] if malformed. */
function readInt(s: string, i: number): [number, number] {
  let v = 0;
  const start = i;
  for (;;) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      v = v * 10 + (c - 48);
      i++;
    } else if (c === 124 /* | */ && i > start) {
      return [v, i + 1];
    } else {
      return [-1, i];
    }
  }
}

/** Parses the marker fields that start at index `i` (just after the mark). */
export function parseMarkerAt(s: string, i: number, out: Marker): boolean {
  let r = readInt(s, i);
  if (r[0] < 0) return false;
  out.slot = r[0];
  r = readInt(s, r[1]);
  if (r[0] < 0) return false;
  out.seq = r[0];
  r = readInt(s, r[1]);
  if (r[0] < 0) return false;
  out.dueUs = r[0];
  r = readInt(s, r[1]);
  if (r[0] < 0) return false;
  out.sentUs = r[0];
  return true;
}

/** Parses a marker from a whole `data` string (the slow path, after JSON.parse). */
export function parseMarker(data: unknown, mark: string, out: Marker): boolean {
  return typeof data === 'string' && data.startsWith(mark) && parseMarkerAt(data, mark.length, out);
}

/**
 * Calls `onPub` for every pub marker in a frame (a `msg`, or a `batch` of them). Returns
 * how many were found.
 */
export function scanPubMarkers(frame: string, out: Marker, onPub: (m: Marker) => void): number {
  let found = 0;
  let i = frame.indexOf(QUOTED_PUB_MARK);
  while (i >= 0) {
    if (parseMarkerAt(frame, i + QUOTED_PUB_MARK.length, out)) {
      found++;
      onPub(out);
    }
    i = frame.indexOf(QUOTED_PUB_MARK, i + QUOTED_PUB_MARK.length);
  }
  return found;
}

/** A frame takes the fast path when it holds pub markers and nothing that needs a reply. */
export function isFastPathFrame(frame: string): boolean {
  return frame.includes(QUOTED_PUB_MARK) && !frame.includes('"ackReq"');
}

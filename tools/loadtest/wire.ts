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
 * A `msg` or `batch` frame is scanned for `"LT1|` as bytes (tools/lib/frame-scan.ts), which is
 * many times cheaper than JSON.parse on a batch of a few hundred messages. The marker is digits
 * and `|` only, so the JSON encoding of the string is the string itself, and a server may put
 * the fields of `msg` in any order.
 */
import { indexOfBytes, numberEnd, readNumber } from '../lib/frame-scan.js';

export const PUB_MARK = 'LT1|';
export const SEND_MARK = 'LD1|';
const QUOTED_PUB_MARK = Buffer.from('"' + PUB_MARK, 'latin1');
const ACK_REQ_KEY = Buffer.from('"ackReq"', 'latin1');
const PIPE = 0x7c; // |

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

/** Reads one marker field: a non-negative number ended by `|`; -1 if malformed. `numberEnd` is then at the `|`. */
function readField(frame: Buffer, at: number, end: number): number {
  const value = readNumber(frame, at, end);
  return value >= 0 && frame[numberEnd] === PIPE ? value : -1;
}

/** Parses the marker fields that start at index `at` (just after the mark) in frame[.., end). */
export function parseMarkerAt(frame: Buffer, at: number, end: number, out: Marker): boolean {
  const slot = readField(frame, at, end);
  if (slot < 0) return false;
  const seq = readField(frame, numberEnd + 1, end);
  if (seq < 0) return false;
  const dueUs = readField(frame, numberEnd + 1, end);
  if (dueUs < 0) return false;
  const sentUs = readField(frame, numberEnd + 1, end);
  if (sentUs < 0) return false;
  out.slot = slot;
  out.seq = seq;
  out.dueUs = dueUs;
  out.sentUs = sentUs;
  return true;
}

/** Parses a marker from a whole `data` string (the slow path, after JSON.parse). */
export function parseMarker(data: unknown, mark: string, out: Marker): boolean {
  if (typeof data !== 'string' || !data.startsWith(mark)) return false;
  const bytes = Buffer.from(data, 'latin1');
  return parseMarkerAt(bytes, mark.length, bytes.length, out);
}

/**
 * Calls `onPub` for every pub marker in a frame (a `msg`, or a `batch` of them). Returns
 * how many were found.
 */
export function scanPubMarkers(frame: Buffer, out: Marker, onPub: (m: Marker) => void): number {
  const end = frame.length;
  let found = 0;
  let i = indexOfBytes(frame, QUOTED_PUB_MARK, 0, end);
  while (i >= 0) {
    if (parseMarkerAt(frame, i + QUOTED_PUB_MARK.length, end, out)) {
      found++;
      onPub(out);
    }
    i = indexOfBytes(frame, QUOTED_PUB_MARK, i + QUOTED_PUB_MARK.length, end);
  }
  return found;
}

/** A frame takes the fast path when it holds pub markers and nothing that needs a reply. */
export function isFastPathFrame(frame: Buffer): boolean {
  // The second search usually runs to the end of the frame: Buffer.indexOf does that natively.
  return indexOfBytes(frame, QUOTED_PUB_MARK, 0, frame.length) >= 0 && frame.indexOf(ACK_REQ_KEY) < 0;
}

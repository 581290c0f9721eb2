/**
 * HDR histograms of latencies in microseconds (1 µs .. 10 min, 3 significant digits: within
 * 0.1% at every magnitude), their interchange encoding (compressed base64, as HdrHistogram
 * logs use), and what is read off a merged one: percentiles and Prometheus buckets.
 */
import { Buffer } from 'node:buffer';
import { createRequire } from 'node:module';
import { deflateSync } from 'node:zlib';
import type { Histogram, JsHistogram } from 'hdr-histogram-js';

export type { Histogram };

/**
 * The two histogram classes, not the package's index: that loads every module (the WebAssembly
 * build, the log reader and writer, an Intl number format, deflate), 35-50 ms of CPU at start-up
 * on every thread for what this file uses; the interchange encoding is written here (encodeHistogram).
 */
const require = createRequire(import.meta.url);
const { default: Int32Histogram } = require('hdr-histogram-js/dist/Int32Histogram.js') as typeof import('hdr-histogram-js/dist/Int32Histogram.js');
const { default: Float64Histogram } = require('hdr-histogram-js/dist/Float64Histogram.js') as typeof import('hdr-histogram-js/dist/Float64Histogram.js');
export const LOWEST_US = 1;
export const HIGHEST_US = 600 * 1_000_000;
/** Starting range; autoResize grows a histogram (once) when a longer latency arrives. */
const INITIAL_HIGHEST_US = 10 * 1_000_000;

/**
 * A histogram for what accumulates since start: 64-bit counts (2^31 samples in one bucket is
 * days at high rates), as the package's build() makes it with bitBucketSize 64 and autoResize.
 * (An interval's samples are counted in interval-counts.ts.)
 */
export function newHistogram(): Histogram {
  const h = new Float64Histogram(LOWEST_US, INITIAL_HIGHEST_US, 3);
  h.autoResize = true;
  return h;
}

/** A duration in µs clamped into the trackable range (below 1 µs is clock jitter). */
export function clampUs(us: number): number {
  return us < LOWEST_US ? LOWEST_US : us > HIGHEST_US ? HIGHEST_US : Math.round(us);
}

const V2_COOKIE = 0x1c849303 | 0x10;
const V2_COMPRESSED_COOKIE = 0x1c849304 | 0x10;
const V2_HEADER_BYTES = 40;
/** Reused: the uncompressed encoding, up to 9 bytes per bucket. */
let scratch = Buffer.alloc(0);
/**
 * Cheap: level 1, a 4 KiB window and little state to set up per call, where zlib's defaults
 * (level 6, a 32 KiB window, 256 KiB of state) cost more on every call. With the rest of this
 * encoder, `npm run bench:hdr` has five busy histograms at 0.58x hdr-histogram-js's time, and
 * the text came out no larger (17.7 against 18.5 KB). Any zlib stream decodes the same
 * (hdr-histogram-js, HdrHistogram's Java and Go readers).
 */
const DEFLATE = { level: 1, windowBits: 12, memLevel: 5 };

/**
 * `h` in HdrHistogram's compressed V2 encoding (TLZE, 9-byte words) in base64, as
 * hdr-histogram-js writes it but for the deflate settings; '' for an empty histogram. Its own
 * encoder took 0.3-0.7 ms per histogram, 2-3.5 ms for the five of /stats/histograms, in one
 * turn of the primary's loop: code run once per interval is slow to be optimised, and it
 * builds its buffer a byte at a time and base64 in JavaScript.
 */
export function encodeHistogram(h: Histogram): string {
  if (h.totalCount === 0) return '';
  const js = h as JsHistogram;
  const counts = countsOf(h);
  const limit = Math.min(js.countsArrayIndex(h.maxValue) + 1, counts.length);
  // A count takes at most 9 bytes (ZigZag LEB128 of a 64-bit value).
  if (scratch.length < V2_HEADER_BYTES + limit * 9) scratch = Buffer.allocUnsafe(V2_HEADER_BYTES + limit * 9);
  const b = scratch;
  b.writeInt32BE(V2_COOKIE, 0);
  b.writeInt32BE(1, 8); // normalizingIndexOffset, as hdr-histogram-js writes it
  b.writeInt32BE(js.numberOfSignificantValueDigits, 12);
  writeInt64BE(b, 16, js.lowestDiscernibleValue);
  writeInt64BE(b, 24, js.highestTrackableValue);
  writeInt64BE(b, 32, 1); // integerToDoubleValueConversionRatio
  let at = V2_HEADER_BYTES;
  for (let i = 0; i < limit; ) {
    let value = counts[i++]!;
    if (value === 0) {
      // A run of zeros is one negative count.
      let zeros = 1;
      while (i < limit && counts[i] === 0) {
        zeros++;
        i++;
      }
      if (zeros > 1) value = -zeros;
    }
    at = writeZigZag(b, at, value);
  }
  b.writeInt32BE(at - V2_HEADER_BYTES, 4);
  const compressed = deflateSync(b.subarray(0, at), DEFLATE);
  const out = Buffer.allocUnsafe(8 + compressed.length);
  out.writeInt32BE(V2_COMPRESSED_COOKIE, 0);
  out.writeInt32BE(compressed.length, 4);
  compressed.copy(out, 8);
  return out.toString('base64');
}

function writeInt64BE(b: Buffer, at: number, value: number): void {
  b.writeUInt32BE(Math.floor(value / 2 ** 32) >>> 0, at);
  b.writeUInt32BE(value >>> 0, at + 4);
}

/** `n` ZigZag-mapped, then LEB128 in at most 9 bytes (the ninth takes 8 bits); returns the position after it. */
function writeZigZag(b: Buffer, at: number, n: number): number {
  let v = n >= 0 ? n * 2 : -n * 2 - 1;
  for (let i = 0; i < 8 && v >= 0x80; i++) {
    b[at++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  b[at++] = v & 0xff;
  return at;
}

/**
 * The counts array of `h`, read directly: hdr-histogram-js's getCountAtIndex and
 * valueFromIndex per bucket made one summary of a busy histogram cost over a millisecond, on
 * the primary's loop (the broker's) or a shard's, once per interval and per latency.
 */
function countsOf(h: Histogram): ArrayLike<number> {
  const counts = (h as unknown as { _counts: unknown })._counts;
  if (!ArrayBuffer.isView(counts)) throw new TypeError('hdr-histogram-js keeps its counts elsewhere: update countsOf()');
  return counts as unknown as ArrayLike<number>;
}

/**
 * The one bucket layout of every histogram here (LOWEST_US, 3 digits; the highest trackable
 * value only sets how many buckets exist): what a bucket index means. A histogram of the
 * smallest range, for its layout fields and countsArrayIndex.
 */
const LAYOUT = new Int32Histogram(LOWEST_US, 2 * LOWEST_US, 3) as unknown as JsHistogram;
const HALF_MAGNITUDE = LAYOUT.subBucketHalfCountMagnitude;
const HALF_COUNT = LAYOUT.subBucketHalfCount;
const UNIT_MAGNITUDE = LAYOUT.unitMagnitude;
/** Bucket indexes up to HIGHEST_US: the most a sparse list may address. */
export const SPARSE_INDEXES = LAYOUT.countsArrayIndex(HIGHEST_US) + 1;
/** Powers of two by exponent: `2 ** n` with a variable n is a call to pow() in V8, once per bucket visited. */
const POW2 = Float64Array.from({ length: 64 }, (_, n) => 2 ** n);

/** The index of the bucket holding `valueUs` (an integer >= 0). */
export function indexOfValue(valueUs: number): number {
  return LAYOUT.countsArrayIndex(valueUs);
}

/** The lowest value of bucket `index` (hdr-histogram-js's valueFromIndex). */
export function bucketValue(index: number): number {
  const bucket = (index >> HALF_MAGNITUDE) - 1;
  const sub = index & (HALF_COUNT - 1);
  return bucket < 0 ? sub * POW2[UNIT_MAGNITUDE]! : (sub + HALF_COUNT) * POW2[bucket + UNIT_MAGNITUDE]!;
}

/** How many values bucket `index` holds (its lowest equivalent value .. + size - 1). */
export function bucketSize(index: number): number {
  const bucket = (index >> HALF_MAGNITUDE) - 1;
  return POW2[bucket < 0 ? UNIT_MAGNITUDE : bucket + UNIT_MAGNITUDE]!;
}

/**
 * Adds a sparse list (checkSparseCounts) into `into`, straight into its counts array (recording
 * each bucket as a value cost 3-6 ms per interval for two shards in the primary); throws a
 * TypeError on a malformed list, before adding anything.
 */
export function addSparseCounts(into: Histogram, pairs: readonly number[]): void {
  if (pairs.length === 0) return;
  const js = into as JsHistogram;
  const { last, total } = checkSparseCounts(pairs);
  const max = js.highestEquivalentValue(bucketValue(last));
  if (last >= js.countsArrayLength) js.resize(max);
  let index = -1;
  for (let k = 0; k < pairs.length; k += 2) {
    index += pairs[k]!;
    js.addToCountAtIndex(index, pairs[k + 1]!);
  }
  js.setTotalCount(js.totalCount + total);
  // As HdrHistogram's own add: the max as its bucket's highest equivalent value, the min as the lowest.
  if (max > js.maxValue) js.maxValue = max;
  const first = pairs[0]! - 1;
  const lowestNonZero = first > 0 ? first : pairs.length > 2 ? first + pairs[2]! : -1;
  if (lowestNonZero > 0 && bucketValue(lowestNonZero) < js.minNonZeroValue) js.minNonZeroValue = bucketValue(lowestNonZero);
}

/**
 * A sparse list is how a thread reports an interval's latencies (interval-counts.ts writes it):
 * the non-zero bucket counts as [gap, count, gap, count, ...], where gap is the distance in
 * bucket indexes from the previous non-zero bucket (from -1 for the first), small integers that
 * MessagePack packs in a byte or two. Every histogram here has one layout (LOWEST_US, 3 digits),
 * so an index means the same bucket in each.
 *
 * Checks one: positive integer gaps and counts, every index within SPARSE_INDEXES. Returns its
 * last index and its total count; throws a TypeError otherwise.
 */
export function checkSparseCounts(pairs: readonly number[]): { last: number; total: number } {
  let index = -1;
  let total = 0;
  for (let k = 0; k < pairs.length; k += 2) {
    const gap = pairs[k]!;
    const count = pairs[k + 1]!;
    index += gap;
    if (!Number.isInteger(gap) || gap < 1 || !Number.isInteger(count) || count < 1 || index >= SPARSE_INDEXES) {
      throw new TypeError('sparse counts: not a list of positive gaps and counts within range');
    }
    total += count;
  }
  return { last: index, total };
}

/** The figures shown for one latency over one window, in microseconds (count: samples). */
export interface Summary {
  count: number;
  p50: number;
  p90: number;
  p95: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export const EMPTY_SUMMARY: Readonly<Summary> = Object.freeze({ count: 0, p50: 0, p90: 0, p95: 0, p99: 0, p999: 0, max: 0, mean: 0 });

export const PERCENTILES = [50, 90, 95, 99, 99.9] as const;

/** The rank of percentile `p` among `total` samples, as getValueAtPercentile counts: rounded up, less one ulp of floating-point slack. */
export function percentileRank(p: number, total: number): number {
  const fp = (p / 100) * total;
  return Math.max(Math.ceil(fp - fp * Number.EPSILON), 1);
}

/**
 * The Summary of `h`, whose non-zero buckets `pairs` lists (as sparse counts), in one walk over
 * them: the same values as getValueAtPercentile, clamped to the max so that P99 <= max when
 * both fall in the top bucket.
 */
export function summarizeSparse(h: Pick<Histogram, 'totalCount' | 'maxValue'>, pairs: readonly number[]): Summary {
  const total = h.totalCount;
  const max = h.maxValue;
  if (total === 0) return { ...EMPTY_SUMMARY };
  const targets = PERCENTILES.map((p) => percentileRank(p, total));
  const found: number[] = [];
  let seen = 0;
  let weighted = 0;
  let index = -1;
  for (let k = 0; k < pairs.length; k += 2) {
    index += pairs[k]!;
    const count = pairs[k + 1]!;
    const value = bucketValue(index);
    const size = bucketSize(index);
    seen += count;
    weighted += (value + Math.floor(size / 2)) * count; // the bucket's median equivalent value
    while (found.length < targets.length && seen >= targets[found.length]!) found.push(value + size - 1); // its highest equivalent value
  }
  const at = (i: number): number => Math.min(found[i] ?? max, max);
  return { count: total, p50: at(0), p90: at(1), p95: at(2), p99: at(3), p999: at(4), max, mean: weighted / total };
}

// An hdr-histogram-js histogram as a sparse list (src/metrics/hdr.ts checkSparseCounts): the
// reference the tests hold the server's own counts and summaries to. Threads once reported
// through it; they count into src/metrics/interval-counts.ts now.
import type { JsHistogram } from 'hdr-histogram-js';
import { indexOfValue, type Histogram } from '../../src/metrics/hdr.js';

/** The non-zero counts of `h` as [gap, count, ...], walked from its lowest sample's bucket. */
export function sparseCounts(h: Histogram): number[] {
  const js = h as JsHistogram;
  const out: number[] = [];
  const total = h.totalCount;
  if (total === 0) return out;
  let seen = 0;
  let previous = -1;
  // From the lowest sample's bucket. (Zero is not a "non-zero value": its bucket is 0.)
  const start = js.getCountAtIndex(0) !== 0 || h.minNonZeroValue === Number.MAX_SAFE_INTEGER ? 0 : indexOfValue(h.minNonZeroValue);
  for (let i = start; i < js.countsArrayLength && seen < total; i++) {
    const count = js.getCountAtIndex(i);
    if (count === 0) continue;
    out.push(i - previous, count);
    previous = i;
    seen += count;
  }
  return out;
}

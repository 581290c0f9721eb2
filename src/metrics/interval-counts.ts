/**
 * One interval's samples of a latency as counts per HDR bucket (hdr.ts's layout), what each
 * thread reports once an interval: record() is an index computation and an add; take() lists
 * the buckets filled since the last take, as a sparse list (hdr.ts checkSparseCounts), and clears only those.
 * An hdr-histogram-js histogram walked its counts array from the lowest sample's bucket to the
 * highest's to make that list (thousands of entries when latencies span milliseconds) and then
 * cleared the whole array: under callgrind, about 45 instructions per delivery at 50,000
 * deliveries a second, the largest part of what the metrics cost a shard.
 */
import { indexOfValue, SPARSE_INDEXES } from './hdr.js';

export class IntervalCounts {
  private readonly counts = new Uint32Array(SPARSE_INDEXES);
  /** The indexes of the buckets filled since the last take, in the order they were first filled. */
  private filled = new Int32Array(64);
  private filledCount = 0;
  /** Samples since the last take. */
  totalCount = 0;
  /** The highest sample since the last take (0: none): hdr-histogram-js's maxValue for LOWEST_US = 1. */
  maxValue = 0;

  /** `count` samples of `valueUs`, an integer within LOWEST_US..HIGHEST_US (hdr.ts's clampUs). */
  record(valueUs: number, count = 1): void {
    const index = indexOfValue(valueUs);
    if (this.counts[index] === 0) {
      if (this.filledCount === this.filled.length) this.grow();
      this.filled[this.filledCount++] = index;
    }
    this.counts[index]! += count;
    this.totalCount += count;
    if (valueUs > this.maxValue) this.maxValue = valueUs;
  }

  /** The counts since the last take as a sparse list ([gap, count, ...], hdr.ts checkSparseCounts); then empty. */
  take(): number[] {
    const indexes = this.filled.subarray(0, this.filledCount).sort();
    const out: number[] = [];
    let previous = -1;
    for (let k = 0; k < indexes.length; k++) {
      const index = indexes[k]!;
      out.push(index - previous, this.counts[index]!);
      this.counts[index] = 0;
      previous = index;
    }
    this.filledCount = 0;
    this.totalCount = 0;
    this.maxValue = 0;
    return out;
  }

  private grow(): void {
    const larger = new Int32Array(Math.min(SPARSE_INDEXES, this.filled.length * 2));
    larger.set(this.filled);
    this.filled = larger;
  }
}

/**
 * Latency counts per HDR bucket (the layout of hdr.ts: LOWEST_US, 3 digits, up to HIGHEST_US),
 * for the windows read every interval: each thread's since-start counts and the primary's
 * merged ones. The counts are kept per bucket and summed per block of BLOCK buckets, so adding
 * a bucket costs two additions, and a summary or a cumulative count walks the blocks up to the
 * figure's one, then that block's buckets: a few hundred steps at most over the 20,601
 * buckets, far fewer for latencies of milliseconds, which sit in the first blocks.
 *
 * Why not a walk over the counts: the since-start windows (six latencies, in every thread,
 * each interval) were most of the metrics cycle's work that way, about 7 M instructions a second
 * of a one-shard server at 4,000 deliveries/s under callgrind. Why not a Fenwick tree (the
 * version before this one): each bucket an interval filled goes into four of these windows
 * (the thread's since-start one, the primary's interval, since-start and export-window ones),
 * and the tree's add climbs 15 levels each time. Timed in a loop over intervals of 500
 * latencies (150 buckets each), the four adds, three summaries, the /metrics counts and a clear
 * took 12-15 µs against the tree's 19.
 */
import { bucketSize, bucketValue, checkSparseCounts, EMPTY_SUMMARY, indexOfValue, PERCENTILES, percentileRank, SPARSE_INDEXES, type Summary } from './hdr.js';

/** Buckets per block, as a shift: 128. */
const BLOCK_SHIFT = 7;
const BLOCK = 1 << BLOCK_SHIFT;
const BLOCKS = Math.ceil(SPARSE_INDEXES / BLOCK);

/** One figure per entry of PERCENTILES. */
type Five = [number, number, number, number, number];

export class BucketCounts {
  /** Samples per bucket; null until the first sample (most latencies of most threads never get one). */
  private counts: Float64Array | null = null;
  /** Samples per block of BLOCK buckets. */
  private blocks: Float64Array | null = null;
  /** The buckets that hold samples: clear() costs what was added, not the window's size. */
  private touched: number[] = [];
  private highest = -1;
  private weighted = 0;
  count = 0;

  /**
   * Adds a sparse list (hdr.ts's checkSparseCounts: [gap, count, ...]); throws a TypeError on a
   * malformed list, before adding anything.
   */
  add(pairs: readonly number[]): void {
    if (pairs.length === 0) return;
    checkSparseCounts(pairs);
    const counts = (this.counts ??= new Float64Array(SPARSE_INDEXES));
    const blocks = (this.blocks ??= new Float64Array(BLOCKS));
    let index = -1;
    for (let k = 0; k < pairs.length; k += 2) {
      index += pairs[k]!;
      const count = pairs[k + 1]!;
      // Counts are positive (checked), so a bucket at zero has not been touched since clear().
      if (counts[index] === 0) this.touched.push(index);
      counts[index]! += count;
      blocks[index >> BLOCK_SHIFT]! += count;
      this.weighted += (bucketValue(index) + Math.floor(bucketSize(index) / 2)) * count; // the bucket's median equivalent value
      this.count += count;
    }
    if (index > this.highest) this.highest = index;
  }

  /** Back to no samples, in time proportional to the buckets that had some. */
  clear(): void {
    const { counts, blocks } = this;
    if (counts === null || blocks === null) return;
    for (const index of this.touched) {
      counts[index] = 0;
      blocks[index >> BLOCK_SHIFT] = 0;
    }
    this.touched = [];
    this.highest = -1;
    this.weighted = 0;
    this.count = 0;
  }

  /**
   * The figures hdr.ts's summarize gives for a histogram holding these counts: each percentile
   * as its bucket's highest equivalent value, the max as the top bucket's, the mean from the
   * buckets' median equivalent values.
   */
  summary(): Summary {
    if (this.count === 0) return { ...EMPTY_SUMMARY };
    const max = highestOf(this.highest);
    const ranks = PERCENTILES.map((p) => percentileRank(p, this.count));
    const [p50, p90, p95, p99, p999] = this.indexesOfRanks(ranks).map((index) => Math.min(highestOf(index), max)) as Five;
    return { count: this.count, p50, p90, p95, p99, p999, max, mean: this.weighted / this.count };
  }

  /**
   * Cumulative counts of samples at or below each bound (µs, ascending) and then of all of
   * them, as hdr.ts's cumulativeCounts: a sample counts under the first bound at or above its
   * bucket's lowest equivalent value. One walk for all the bounds.
   */
  cumulative(boundsUs: readonly number[]): number[] {
    const { counts, blocks } = this;
    const out: number[] = [];
    let through = -1; // buckets 0..through are summed in `sum`
    let sum = 0;
    for (const bound of boundsUs) {
      const index = Math.min(indexOfValue(bound), SPARSE_INDEXES - 1);
      if (counts === null || blocks === null) {
        out.push(0);
        continue;
      }
      if (index < through) {
        // Bounds out of order: start the walk over.
        through = -1;
        sum = 0;
      }
      // Bucket by bucket up to a block's start, whole blocks while they fit, then bucket by bucket.
      while (through < index) {
        if (((through + 1) & (BLOCK - 1)) === 0 && through + BLOCK <= index) {
          sum += blocks[(through + 1) >> BLOCK_SHIFT]!;
          through += BLOCK;
        } else {
          sum += counts[++through]!;
        }
      }
      out.push(sum);
    }
    out.push(this.count);
    return out;
  }

  /**
   * For each of `ranks` (ascending, 1 <= rank <= count), the lowest bucket index whose
   * cumulative count reaches it: a walk over whole blocks, then within the block that reaches it.
   */
  private indexesOfRanks(ranks: readonly number[]): number[] {
    const counts = this.counts!;
    const blocks = this.blocks!;
    const out: number[] = [];
    let block = 0;
    let beforeBlock = 0; // samples in the blocks before `block`
    for (const rank of ranks) {
      while (beforeBlock + blocks[block]! < rank) beforeBlock += blocks[block++]!;
      let index = block << BLOCK_SHIFT;
      let through = beforeBlock + counts[index]!;
      while (through < rank) through += counts[++index]!;
      out.push(index);
    }
    return out;
  }
}

/** Bucket `index`'s highest equivalent value. */
function highestOf(index: number): number {
  return bucketValue(index) + bucketSize(index) - 1;
}

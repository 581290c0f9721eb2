import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { JsHistogram } from 'hdr-histogram-js';
import { BucketCounts } from '../src/metrics/bucket-counts.js';
import { addSparseCounts, bucketSize, bucketValue, HIGHEST_US, indexOfValue, newHistogram, SPARSE_INDEXES, summarizeSparse } from '../src/metrics/hdr.js';
import { sparseCounts } from './helpers/hdr-reference.js';
import { BUCKETS_US } from '../src/metrics/prometheus.js';

/** Sparse lists as shards send them: ascending bucket indexes within range, counts >= 1. */
const sparseLists = fc
  .uniqueArray(fc.integer({ min: 0, max: SPARSE_INDEXES - 1 }), { minLength: 1, maxLength: 300 })
  .chain((indexes) => fc.tuple(fc.constant(indexes.sort((a, b) => a - b)), fc.array(fc.integer({ min: 1, max: 1_000_000 }), { minLength: indexes.length, maxLength: indexes.length })))
  .map(([indexes, counts]) => indexes.flatMap((index, k) => [index - (k === 0 ? -1 : indexes[k - 1]!), counts[k]!]));

/** The reference: the same lists added into an HDR histogram, summarised over its non-zero buckets. */
function reference(lists: number[][]) {
  const h = newHistogram();
  for (const pairs of lists) addSparseCounts(h, pairs);
  const summary = summarizeSparse(h, sparseCounts(h));
  // A sample counts under the first bound at or above its bucket's lowest value.
  const buckets = lists.flatMap((pairs) => {
    let index = -1;
    return pairs.flatMap((n, k) => (k % 2 === 0 ? [] : [{ value: bucketValue((index += pairs[k - 1]!)), count: n }]));
  });
  const counts = BUCKETS_US.map((bound) => buckets.filter((b) => b.value <= bound).reduce((sum, b) => sum + b.count, 0));
  counts.push(h.totalCount);
  return { summary, counts };
}

function sameSummary(actual: ReturnType<BucketCounts['summary']>, expected: ReturnType<BucketCounts['summary']>): void {
  const { mean, ...rest } = actual;
  const { mean: expectedMean, ...expectedRest } = expected;
  assert.deepEqual(rest, expectedRest);
  assert.ok(Math.abs(mean - expectedMean) <= 1e-9 * expectedMean, `mean ${mean} against ${expectedMean}`);
}

describe('bucket counts (the windows read every interval)', () => {
  test('summarise as an HDR histogram holding the same buckets does, over any lists added', () => {
    fc.assert(
      fc.property(fc.array(sparseLists, { minLength: 1, maxLength: 4 }), (lists) => {
        const counts = new BucketCounts();
        for (const pairs of lists) counts.add(pairs);
        const expected = reference(lists);
        sameSummary(counts.summary(), expected.summary);
        assert.deepEqual(counts.cumulative(BUCKETS_US), expected.counts);
      }),
      { numRuns: 200 },
    );
  });

  test('after clear() they hold nothing, and then hold only what is added next', () => {
    fc.assert(
      fc.property(sparseLists, sparseLists, (before, after) => {
        const counts = new BucketCounts();
        counts.add(before);
        counts.clear();
        assert.equal(counts.count, 0);
        assert.deepEqual(counts.cumulative(BUCKETS_US), new Array(BUCKETS_US.length + 1).fill(0));
        counts.add(after);
        sameSummary(counts.summary(), reference([after]).summary);
        assert.deepEqual(counts.cumulative(BUCKETS_US), reference([after]).counts);
      }),
      { numRuns: 100 },
    );
  });

  test('cumulative counts do not depend on the order the bounds come in', () => {
    fc.assert(
      fc.property(sparseLists, fc.shuffledSubarray([...BUCKETS_US], { minLength: 1 }), (pairs, bounds) => {
        const counts = new BucketCounts();
        counts.add(pairs);
        const ascending = counts.cumulative([...BUCKETS_US]);
        const expected = bounds.map((bound) => ascending[BUCKETS_US.indexOf(bound)]!);
        assert.deepEqual(counts.cumulative(bounds), [...expected, counts.count]);
      }),
      { numRuns: 100 },
    );
  });

  test('an empty window summarises to zeros, and the first and the last bucket are summarised like any other', () => {
    assert.deepEqual(new BucketCounts().summary(), { count: 0, p50: 0, p90: 0, p95: 0, p99: 0, p999: 0, max: 0, mean: 0 });
    for (const pairs of [[1, 5], [SPARSE_INDEXES, 2], [1, 1, SPARSE_INDEXES - 1, 1]]) {
      const counts = new BucketCounts();
      counts.add(pairs);
      sameSummary(counts.summary(), reference([pairs]).summary);
    }
  });

  test('a malformed list is refused with a TypeError before anything is added', () => {
    const counts = new BucketCounts();
    counts.add([3, 10]);
    for (const bad of [[0, 1], [1, 0], [1.5, 1], [1, -2], [1], [SPARSE_INDEXES + 1, 1], [1, 1, 1, Number.NaN]]) {
      assert.throws(() => counts.add(bad), TypeError, JSON.stringify(bad));
    }
    assert.equal(counts.count, 10);
    assert.deepEqual(counts.summary(), { count: 10, p50: 2, p90: 2, p95: 2, p99: 2, p999: 2, max: 2, mean: 2 });
  });

  test('the bucket layout is hdr-histogram-js\'s own, up to the highest trackable latency', () => {
    const h = newHistogram() as JsHistogram;
    h.resize(HIGHEST_US);
    for (const index of [0, 1, 1023, 1024, 2047, 2048, 5000, 12_345, SPARSE_INDEXES - 1]) {
      assert.equal(bucketValue(index), h.valueFromIndex(index), `value of ${index}`);
      assert.equal(bucketValue(index) + bucketSize(index) - 1, h.highestEquivalentValue(h.valueFromIndex(index)), `size of ${index}`);
      assert.equal(indexOfValue(bucketValue(index)), index);
    }
    assert.equal(indexOfValue(HIGHEST_US), SPARSE_INDEXES - 1);
  });
});

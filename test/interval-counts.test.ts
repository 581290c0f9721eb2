import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { HIGHEST_US, LOWEST_US, newHistogram, summarizeSparse } from '../src/metrics/hdr.js';
import { sparseCounts } from './helpers/hdr-reference.js';
import { IntervalCounts } from '../src/metrics/interval-counts.js';

/** One interval's samples: values in the trackable range (clustered, as latencies are, and spread), each with a count. */
const samples = fc.array(
  fc.tuple(fc.oneof(fc.integer({ min: LOWEST_US, max: 5_000 }), fc.integer({ min: LOWEST_US, max: HIGHEST_US })), fc.integer({ min: 1, max: 1000 })),
  { minLength: 1, maxLength: 400 },
);

/** The reference: the same samples in an hdr-histogram-js histogram (what threads recorded into before). */
function reference(values: Array<[number, number]>) {
  const h = newHistogram();
  for (const [value, count] of values) h.recordValueWithCount(value, count);
  return { pairs: sparseCounts(h), totalCount: h.totalCount, maxValue: h.maxValue, summary: summarizeSparse(h, sparseCounts(h)) };
}

describe('interval counts (what a thread records into and reports each interval)', () => {
  test('report the sparse counts, total, max and summary of an HDR histogram holding the same samples, interval after interval', () => {
    const counts = new IntervalCounts();
    fc.assert(
      fc.property(fc.array(samples, { minLength: 1, maxLength: 3 }), (intervals) => {
        for (const values of intervals) {
          for (const [value, count] of values) counts.record(value, count);
          const expected = reference(values);
          const { totalCount, maxValue } = counts;
          assert.deepEqual({ totalCount, maxValue }, { totalCount: expected.totalCount, maxValue: expected.maxValue });
          const pairs = counts.take();
          assert.deepEqual(pairs, expected.pairs);
          assert.deepEqual(summarizeSparse({ totalCount, maxValue }, pairs), expected.summary);
          assert.deepEqual([counts.totalCount, counts.maxValue, counts.take()], [0, 0, []], 'empty after a take');
        }
      }),
      { numRuns: 200 },
    );
  });

  test('holds more filled buckets than it starts with room for, and the extremes of the range', () => {
    const counts = new IntervalCounts();
    const values = [HIGHEST_US, LOWEST_US, ...Array.from({ length: 5000 }, (_, i) => 1 + i * 97)];
    for (const value of values) counts.record(value);
    assert.deepEqual(counts.take(), reference(values.map((v) => [v, 1])).pairs);
  });
});

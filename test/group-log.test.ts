/**
 * A group's kept history (src/broker/group-log.ts): whether a replay after `since` would pass
 * max_replay_bytes is judged from the newest message back, stopping once past the bound.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GroupLog } from '../src/broker/group-log.js';

const ignore = (): void => {};

function logOf(sizes: number[], keep = sizes.length): GroupLog {
  const log = new GroupLog('g', 'e1', keep, 0);
  for (const size of sizes) log.append('x'.repeat(size), 0, ignore);
  return log;
}

test('more bytes after `since` than the bound: the messages after it, the kept ones only, against the bound itself', () => {
  const log = logOf([100, 100, 100, 100]);
  const frame = (log.bytes / 4) | 0; // each frame: 100 bytes and its tail
  assert.equal(log.moreBytesAfter(0, 4 * frame), false, 'all four fit exactly');
  assert.equal(log.moreBytesAfter(0, 4 * frame - 1), true);
  assert.equal(log.moreBytesAfter(2, 2 * frame), false, 'after offset 2: two messages');
  assert.equal(log.moreBytesAfter(2, 2 * frame - 1), true);
  assert.equal(log.moreBytesAfter(4, 0), false, 'nothing after the top');
});

test('messages no longer kept are not counted', () => {
  const log = logOf([100, 100, 100, 100, 100], 2);
  assert.equal(log.first, 4);
  const frame = (log.bytes / 2) | 0;
  assert.equal(log.moreBytesAfter(0, 2 * frame), false);
  assert.equal(log.moreBytesAfter(0, 2 * frame - 1), true);
});

test('on a group that keeps 100,000 messages, an old `since` is past the bound and a recent one is not', () => {
  const log = logOf(Array.from({ length: 100_000 }, () => 50));
  assert.equal(log.moreBytesAfter(0, 256 * 1024), true);
  assert.equal(log.moreBytesAfter(log.top - 10, 256 * 1024), false);
});

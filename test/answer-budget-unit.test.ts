/**
 * AnswerBudget's reservation (src/broker/answer-budget.ts), which a node of a cluster takes
 * before it asks Redis for an answer of unknown size: taken whole, so that pipelined frames
 * cannot all pass while the first answers are on their way, and settled once the answer came.
 * Capacity 4,000 bytes given back over a second: 4 bytes a millisecond, the slack below.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AnswerBudget } from '../src/broker/answer-budget.js';

test('reservations of the most an answer may be: four at once, the fifth refused until one is settled', () => {
  const budget = new AnswerBudget(1000);
  assert.equal(budget.capacity, 4000);
  for (let i = 0; i < 4; i++) assert.ok(budget.reserve('a', 1000), `reservation ${i}`);
  assert.equal(budget.reserve('a', 1000), false, 'nothing left while four are on their way');
  assert.ok(budget.reserve('b', 1000), 'another connection has its own');
  budget.settle('a', 1000, 100); // 900 given back
  assert.ok(budget.reserve('a', 800));
  assert.equal(budget.reserve('a', 500), false);
});

test('an answer larger than its reservation spends the rest, down to none; one that did not go gives all back', () => {
  const budget = new AnswerBudget(1000);
  assert.ok(budget.reserve('a', 1000));
  budget.settle('a', 1000, 10_000); // spends the other 3,000, not more
  assert.equal(budget.reserve('a', 100), false);
  const other = new AnswerBudget(1000);
  assert.ok(other.reserve('a', 4000));
  other.settle('a', 4000, 0);
  assert.ok(other.reserve('a', 3900), 'all given back');
});

test('a reservation larger than the capacity takes the capacity, so that it can ever pass', () => {
  const budget = new AnswerBudget(1000);
  assert.ok(budget.reserve('a', 1_000_000));
  assert.equal(budget.reserve('a', 100), false);
  budget.settle('a', 1_000_000, 50);
  assert.ok(budget.reserve('a', 3900));
});

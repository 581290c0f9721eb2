/**
 * AnswerBudget's reservation (src/broker/answer-budget.ts), which a node of a cluster takes
 * before it asks Redis for an answer of unknown size: a sixteenth of the budget at most, held
 * while the answer is on its way, so that pipelined frames cannot all pass before the first
 * answers come and a client may still have 16 small ones on their way; settled once the answer
 * came, into debt when it was larger. Capacity 4,000 bytes given back over a second (4 bytes a
 * millisecond: the slack below).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AnswerBudget, RESERVED_SHARE } from '../src/broker/answer-budget.js';

test('sixteen answers of unknown size may be on their way at once, the seventeenth refused until one is settled', () => {
  const budget = new AnswerBudget(1000);
  assert.equal(budget.capacity, 4000);
  assert.equal(RESERVED_SHARE, 16);
  for (let i = 0; i < 16; i++) assert.ok(budget.reserve('a', 1000), `reservation ${i}`);
  assert.equal(budget.reserve('a', 1000), false, 'nothing left while sixteen are on their way');
  assert.ok(budget.reserve('b', 1000), 'another connection has its own');
  budget.settle('a', 1000, 0); // none went: the 250 held given back
  assert.ok(budget.reserve('a', 1000));
  assert.equal(budget.reserve('a', 1000), false);
});

test('a reservation smaller than the share holds only itself', () => {
  const budget = new AnswerBudget(1000);
  for (let i = 0; i < 40; i++) assert.ok(budget.reserve('a', 100), `reservation ${i}`);
  assert.equal(budget.reserve('a', 100), false);
});

test('an answer larger than its reservation is charged into debt, repaid before another is asked', () => {
  const budget = new AnswerBudget(1000);
  for (let i = 0; i < 16; i++) assert.ok(budget.reserve('a', 1000));
  for (let i = 0; i < 16; i++) budget.settle('a', 1000, 1000); // 16,000 bytes went: 12,000 in debt
  assert.equal(budget.reserve('a', 1), false, 'in debt');
  const other = new AnswerBudget(1000);
  assert.ok(other.reserve('a', 4000));
  other.settle('a', 4000, 0);
  for (let i = 0; i < 15; i++) assert.ok(other.reserve('a', 1000), 'all given back');
});

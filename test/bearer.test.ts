import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bearerCheck } from '../src/util/bearer.js';

test('a Bearer header: the scheme in any case, spaces around it, the token exact', () => {
  const check = bearerCheck('s3cret')!;
  for (const header of ['Bearer s3cret', 'bearer s3cret', 'BEARER s3cret', 'Bearer  s3cret', ' Bearer s3cret ', 'Bearer\ts3cret']) assert.equal(check(header), true, JSON.stringify(header));
  for (const header of ['', 'Bearer', 'Bearer ', 'Bearer s3cre', 'Bearer s3cret2', 'Bearer S3CRET', 'Basic s3cret', 's3cret', 'Bearer s3cret extra', 'Bearers3cret']) assert.equal(check(header), false, JSON.stringify(header));
});

test('a token with spaces in it (the config takes any string) is matched whole', () => {
  const check = bearerCheck('pass phrase')!;
  assert.equal(check('Bearer pass phrase'), true);
  assert.equal(check('bearer  pass phrase '), true);
  assert.equal(check('Bearer pass'), false);
  assert.equal(check('Bearer pass  phrase'), false);
});

test('no token configured: no check (the endpoint decides who may ask)', () => {
  assert.equal(bearerCheck(''), null);
});

test('a header of a million blanks is judged in one pass, not backtracked over (it held a shard for seconds)', () => {
  const check = bearerCheck('s3cret')!;
  const blanks = ' \t'.repeat(500_000);
  // Quadratic matching would take hours here; a generous bound keeps this a check of the algorithm, not of speed.
  const started = performance.now();
  for (const header of [`Bearer a${blanks}b`, `Bearer${blanks}`, `${blanks}Bearer${blanks}s3cret${blanks}`]) assert.equal(check(header), header.includes('s3cret'), header.length.toString());
  assert.ok(performance.now() - started < 2_000, `took ${performance.now() - started} ms`);
});

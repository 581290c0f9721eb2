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

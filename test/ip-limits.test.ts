import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { IpLimiter } from '../src/shard/ip-limits.js';

describe('per-IP connection limits', () => {
  test('an address may open `burst` connections at once, then `attemptsPerSecond` a second', () => {
    const limiter = new IpLimiter({ attemptsPerSecond: 10, burst: 3, maxUnauthenticated: 0, maxAddresses: 100 });
    for (let i = 0; i < 3; i++) assert.equal(limiter.admit('10.0.0.1', false, 1000), 'ok');
    assert.equal(limiter.admit('10.0.0.1', false, 1000), 'too_fast');
    assert.equal(limiter.admit('10.0.0.2', false, 1000), 'ok', 'another address has its own bucket');
    assert.equal(limiter.admit('10.0.0.1', false, 1100), 'ok', '100 ms refill one attempt at 10/s');
    assert.equal(limiter.admit('10.0.0.1', false, 1100), 'too_fast');
  });

  test('unauthenticated sockets per address are capped until they authenticate or close', () => {
    const limiter = new IpLimiter({ attemptsPerSecond: 0, burst: 1, maxUnauthenticated: 2, maxAddresses: 100 });
    assert.equal(limiter.admit('a', true, 0), 'ok');
    assert.equal(limiter.admit('a', true, 0), 'ok');
    assert.equal(limiter.admit('a', true, 0), 'too_many_unauthenticated');
    assert.equal(limiter.admit('a', false, 0), 'ok', 'a connection with credentials is not held back');
    limiter.release('a');
    assert.equal(limiter.admit('a', true, 0), 'ok');
  });

  test('the table is bounded: idle addresses are swept, and a table full of busy ones refuses newcomers', () => {
    const limiter = new IpLimiter({ attemptsPerSecond: 1, burst: 1, maxUnauthenticated: 5, maxAddresses: 2 });
    assert.equal(limiter.admit('a', true, 0), 'ok');
    assert.equal(limiter.admit('b', false, 0), 'ok');
    assert.equal(limiter.admit('c', false, 0), 'table_full', 'a holds an unauthenticated socket, b has not refilled');
    assert.equal(limiter.admit('c', false, 1000), 'ok', 'b refilled and was swept');
    assert.ok(limiter.tracked <= 2);
  });

  test('keys are addresses in a Map: odd strings are plain keys', () => {
    const limiter = new IpLimiter({ attemptsPerSecond: 1, burst: 1, maxUnauthenticated: 1, maxAddresses: 10 });
    for (const ip of ['__proto__', 'constructor', 'toString']) assert.equal(limiter.admit(ip, true, 0), 'ok');
    assert.equal(limiter.admit('__proto__', true, 5000), 'too_many_unauthenticated');
  });
});

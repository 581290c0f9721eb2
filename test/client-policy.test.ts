/**
 * The SDK's decisions as pure functions: which close codes retry and how soon, what a
 * history group's bookkeeping says about each message and each join answer, and how long
 * ids are remembered. (Against real servers: client-reconnect.test.ts.)
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DEFAULT_RECONNECT, decideReconnect, RecoveryBook } from '../src/client/index.js';
import { SeenIds } from '../src/client/seen-ids.js';
import { refreshLead, TokenKeeper } from '../src/client/token.js';

const retry = (code: number, attempt: number, random = 0.5): number => {
  const decision = decideReconnect(code, attempt, DEFAULT_RECONNECT, () => random);
  assert.equal(decision.action, 'retry', `close ${code} retries`);
  return decision.action === 'retry' ? decision.delayMs : -1;
};

describe('reconnect policy', () => {
  test('1008 and 4403 stop: retrying cannot help', () => {
    for (const code of [1008, 4403]) assert.equal(decideReconnect(code, 0).action, 'stop');
  });

  test('1012, 1013 and 1001 retry soon: the first retry within soonMs, spread by full jitter', () => {
    for (const code of [1012, 1013, 1001]) {
      assert.equal(retry(code, 0, 0), 0);
      assert.equal(retry(code, 0, 0.999), Math.round(0.999 * DEFAULT_RECONNECT.soonMs));
    }
  });

  test('4001 asks for a fresh token first, and retries at once the first time', () => {
    const decision = decideReconnect(4001, 0);
    assert.deepEqual(decision, { action: 'retry', delayMs: 0, refreshToken: true });
    assert.ok(retry(4001, 3) > 0, 'a token refused again waits');
  });

  test('4400 and 4029 back off at least penaltyMs, even on the first retry, spread above it', () => {
    for (const code of [4400, 4029]) {
      assert.ok(retry(code, 0, 0) >= DEFAULT_RECONNECT.penaltyMs);
      assert.ok(retry(code, 0, 0) > retry(1006, 0, 0.999), 'longer than an ordinary retry');
      // Clients refused in one burst must not all come back at the same instant.
      assert.ok(retry(code, 0, 0.999) - retry(code, 0, 0) >= DEFAULT_RECONNECT.penaltyMs / 5, `jittered: ${retry(code, 0, 0)} to ${retry(code, 0, 0.999)}`);
    }
  });

  test('other codes: exponential with equal jitter, capped at maxMs', () => {
    const { initialMs, maxMs } = DEFAULT_RECONNECT;
    assert.equal(retry(1006, 0, 0), initialMs / 2);
    assert.equal(retry(1006, 0, 1), initialMs);
    assert.equal(retry(1006, 3, 0), (initialMs * 8) / 2);
    assert.equal(retry(1006, 40, 1), maxMs);
    assert.equal(retry(4408, 1, 0.5), Math.round(initialMs * 2 * 0.75));
  });

  test('maxAttempts gives up', () => {
    assert.equal(decideReconnect(1006, 5, { ...DEFAULT_RECONNECT, maxAttempts: 5 }).action, 'stop');
  });
});

describe('recovery bookkeeping', () => {
  test('messages in order are delivered, repeats are duplicates, a jump is a gap, a new epoch restarts the numbering (its own verdict)', () => {
    const book = new RecoveryBook();
    assert.equal(book.check('g', 1, 'e1'), 'deliver');
    assert.equal(book.check('g', 2, 'e1'), 'deliver');
    assert.equal(book.check('g', 2, 'e1'), 'duplicate');
    assert.equal(book.check('g', 1, 'e1'), 'duplicate');
    assert.equal(book.check('g', 5, 'e1'), 'gap');
    assert.deepEqual(book.since('g'), { offset: 5, epoch: 'e1' });
    assert.equal(book.check('g', 1, 'e2'), 'epoch');
    assert.deepEqual(book.since('g'), { offset: 1, epoch: 'e2' });
    const position = book.position('g')!;
    position.offset = 99;
    assert.deepEqual(book.position('g'), { offset: 1, epoch: 'e2' }, 'position() is a copy: what the app does to it changes nothing');
    assert.equal(book.check('other', undefined, undefined), 'deliver', 'no offset: not the book’s business');
    assert.equal(book.check('g', -1, 'e2'), 'deliver', 'a malformed offset is ignored, not recorded');
    assert.equal(book.check('g', '7', 'e2'), 'deliver');
    assert.deepEqual(book.since('g'), { offset: 1, epoch: 'e2' });
  });

  test('a first join starts at the group’s top; a re-join whose replay reached the top recovered', () => {
    const book = new RecoveryBook();
    assert.deepEqual(book.joined('g', { offset: 10, epoch: 'e' }, undefined), { history: true, recovered: true, position: { offset: 10, epoch: 'e' } });
    assert.equal(book.check('g', 11, 'e'), 'deliver');
    const since = book.since('g');
    assert.deepEqual(since, { offset: 11, epoch: 'e' });
    // Reconnect: the server replays 12 and 13, then answers.
    assert.equal(book.check('g', 12, 'e'), 'deliver');
    assert.equal(book.check('g', 13, 'e'), 'deliver');
    assert.deepEqual(book.joined('g', { offset: 13, epoch: 'e', recovered: true }, since), { history: true, recovered: true, position: { offset: 13, epoch: 'e' } });
  });

  test('a re-join the server could not recover, or whose replay stopped short, is not recovered and starts at the top', () => {
    const book = new RecoveryBook();
    book.joined('g', { offset: 3, epoch: 'e' }, undefined);
    const since = book.since('g');
    assert.deepEqual(book.joined('g', { offset: 50, epoch: 'e', recovered: false }, since), { history: true, recovered: false, position: { offset: 50, epoch: 'e' } });
    assert.deepEqual(book.joined('g', { offset: 60, epoch: 'e', recovered: true }, book.since('g')), { history: true, recovered: false, position: { offset: 60, epoch: 'e' } });
    assert.deepEqual(book.joined('g', { offset: 2, epoch: 'e2', recovered: true }, book.since('g')), { history: true, recovered: false, position: { offset: 2, epoch: 'e2' } });
  });

  test('a group without history: joined carries no offset, and nothing is recorded', () => {
    const book = new RecoveryBook();
    assert.deepEqual(book.joined('plain', {}, undefined), { history: false });
    assert.deepEqual(book.joined('plain', { offset: 'x', epoch: 1 }, undefined), { history: false });
    assert.equal(book.since('plain'), undefined);
  });
});

test('seen ids: remembered up to capacity, the oldest forgotten first; __proto__ is an id like any other', () => {
  const seen = new SeenIds(3);
  assert.equal(seen.add('__proto__'), true);
  assert.equal(seen.add('__proto__'), false);
  seen.add('b');
  seen.add('c');
  seen.add('d');
  assert.equal(seen.has('__proto__'), false);
  assert.deepEqual(['b', 'c', 'd'].map((id) => seen.has(id)), [true, true, true]);
  assert.equal(seen.size, 3);
  assert.throws(() => new SeenIds(0), RangeError);
});

test('seen ids: an id forgotten (its listener threw) and seen again is remembered for a whole window from then', () => {
  const seen = new SeenIds(4);
  seen.add('x');
  seen.delete('x');
  seen.add('a');
  seen.add('x');
  for (const id of ['b', 'c', 'd']) seen.add(id);
  assert.equal(seen.has('x'), true, 'three ids came after its second record, in a window of four');
  assert.equal(seen.add('x'), false);
  assert.equal(seen.size, 4);
});

test('token refresh lead: a tenth of what is left, at least 1 s, at most 60 s', () => {
  assert.equal(refreshLead(2000), 1000);
  assert.equal(refreshLead(300_000), 30_000);
  assert.equal(refreshLead(3_600_000), 60_000);
});

test('token refresh: an expiry in the past, NaN, or 40 days away never makes the callback run in a loop, nor a timer overflow', async () => {
  const warnings: string[] = [];
  const onWarning = (w: Error): void => void warnings.push(w.name);
  process.on('warning', onWarning);
  try {
    for (const [name, at] of [['past', 0], ['NaN', NaN], ['infinite', 1e300], ['40 days', Date.now() + 40 * 86_400_000]] as const) {
      let asked = 0;
      const keeper = new TokenKeeper(
        () => `t${++asked}`,
        async () => at,
        () => {},
      );
      keeper.expiresAt(at);
      await new Promise((resolve) => setTimeout(resolve, 1_300));
      keeper.stop();
      // A past expiry refreshes once a second at most; the others not at all yet.
      assert.ok(asked <= (name === 'past' ? 1 : 0), `${name}: the callback ran ${asked} times in 1.3 s`);
    }
  } finally {
    process.off('warning', onWarning);
  }
  assert.deepEqual(warnings, []);
});

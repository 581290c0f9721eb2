/**
 * The SDK's recovery book (src/client/recovery.ts) when the application's listener throws on a
 * message of a history group: the message must come again with the next re-join's replay.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RecoveryBook } from '../src/client/recovery.js';

test('a message a listener threw on is asked for again by the next re-join, and let through; the rest of the replay is dropped as seen', () => {
  const book = new RecoveryBook();
  book.joined('g', { offset: 0, epoch: 'e' }, undefined);
  assert.equal(book.check('g', 1, 'e'), 'deliver');
  book.failed('g', 1, 'e');
  assert.equal(book.check('g', 2, 'e'), 'deliver');
  book.handed('g', 2);
  assert.deepEqual(book.since('g'), { offset: 0, epoch: 'e' }, 'from before the one not handed');
  // The replay: 1 comes through again, 2 is a duplicate.
  assert.equal(book.check('g', 1, 'e'), 'deliver');
  book.handed('g', 1);
  assert.equal(book.check('g', 2, 'e'), 'duplicate');
  assert.deepEqual(book.since('g'), { offset: 2, epoch: 'e' }, 'all handed: from the top again');
});

test('what a listener threw on is forgotten when it cannot come back: a new epoch, a re-join that did not recover', () => {
  const book = new RecoveryBook();
  book.joined('g', { offset: 0, epoch: 'e' }, undefined);
  book.check('g', 1, 'e');
  book.failed('g', 1, 'e');
  book.check('g', 2, 'e2');
  assert.deepEqual(book.since('g'), { offset: 2, epoch: 'e2' });
  book.check('g', 3, 'e2');
  book.failed('g', 3, 'e2');
  book.joined('g', { offset: 9, epoch: 'e3', recovered: false }, book.since('g'));
  assert.deepEqual(book.since('g'), { offset: 9, epoch: 'e3' });
});

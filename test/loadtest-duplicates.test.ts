/**
 * Deliveries received twice, told apart: the same connection twice (a server defect), the
 * old and new connection of a reconnecting user (expected overlap), and `send` redelivery
 * (at-least-once, expected). No sockets: the receipts of one user, connection by connection.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { classifyDuplicate, recordReceipt, type Receipts } from '../tools/loadtest/duplicates.js';
import { hasSeq } from '../tools/loadtest/delivery.js';

describe('duplicate deliveries', () => {
  it('a message with ackReq received again is a redelivery, on any connection', () => {
    assert.equal(classifyDuplicate(true, true), 'sendRedelivered');
    assert.equal(classifyDuplicate(true, false), 'sendRedelivered');
    assert.equal(classifyDuplicate(false, true), 'sameConnection');
    assert.equal(classifyDuplicate(false, false), 'reconnectOverlap');
  });

  it("the user's first connection: a repeat is the server sending it twice", () => {
    const user: Receipts = new Map();
    // The first connection shares the user's receipts: nothing was received before it.
    assert.equal(recordReceipt(user, user, 7, 1, false, 8), null);
    assert.equal(recordReceipt(user, user, 7, 2, false, 8), null);
    assert.equal(recordReceipt(user, user, 7, 1, false, 8), 'sameConnection');
    assert.equal(recordReceipt(user, user, 9, 1, false, 8), null, 'another sender, the same seq: a different message');
  });

  it('a reconnecting user: old and new connection both getting a pub is overlap; the new one getting it twice is a defect', () => {
    const user: Receipts = new Map();
    const first = user;
    assert.equal(recordReceipt(user, first, 3, 10, false, 8), null);
    const second: Receipts = new Map();
    assert.equal(recordReceipt(user, second, 3, 10, false, 8), 'reconnectOverlap');
    assert.equal(recordReceipt(user, second, 3, 11, false, 8), null);
    assert.equal(recordReceipt(user, second, 3, 11, false, 8), 'sameConnection');
    assert.equal(recordReceipt(user, second, 3, 10, false, 8), 'sameConnection');
    // The user's receipts hold everything any of its connections received: what loss is counted from.
    assert.ok(hasSeq(user.get(3)!.bits, 10) && hasSeq(user.get(3)!.bits, 11));
  });

  it('a send redelivered, on the same connection after a timeout or on the next one', () => {
    const user: Receipts = new Map();
    assert.equal(recordReceipt(user, user, 5, 0, true, 16), null);
    assert.equal(recordReceipt(user, user, 5, 0, true, 16), 'sendRedelivered');
    const next: Receipts = new Map();
    assert.equal(recordReceipt(user, next, 5, 0, true, 16), 'sendRedelivered');
    assert.equal(recordReceipt(user, next, 5, 1, true, 16), null);
  });
});

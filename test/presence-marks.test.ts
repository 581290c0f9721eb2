import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Config } from '../src/config/schema.js';
import { Presence } from '../src/broker/presence.js';

const delivery = { group_strategies: new Map(), weights: new Map(), default_strategy: 'round_robin' } as unknown as Config['websocket']['delivery'];

/** What the presence holds of its users' marked groups (marked-memberships.ts): users indexed, and their groups. */
function held(presence: Presence): { users: number; indexed: number } {
  const byUser = (presence as unknown as { marks: { byUser: Map<string, Map<string, number>> } }).marks.byUser;
  let indexed = 0;
  for (const groups of byUser.values()) indexed += groups.size;
  return { users: byUser.size, indexed };
}

/**
 * Delivery marks its blocked groups in the presence, which finds a user's of them without a
 * walk of all its groups. Indexing every member of a group when it was marked cost a marking
 * of a group of 10,000 (a queue's workers, all with full windows) about 12 ms, and as much to
 * unmark it, at each `any` that found them full: only users in many groups are indexed.
 */
describe('presence: the marked groups of each user', () => {
  test('a marked group of 10,000 members each in one group indexes nothing, and is found by a walk of their groups', () => {
    const presence = new Presence(delivery);
    for (let u = 0; u < 10_000; u++) {
      presence.online(`s${u}`, `u${u}`, 0);
      presence.join(`s${u}`, 'queue', 0);
    }
    presence.mark('queue');
    assert.deepEqual(held(presence), { users: 0, indexed: 0 });
    assert.deepEqual([...presence.markedGroupsOf('u7')], ['queue']);
    presence.unmark('queue');
    assert.deepEqual([...presence.markedGroupsOf('u7')], []);
  });

  test('a user in 1,000 groups finds its marked ones through its index, which holds them only while they are marked and it is in them', () => {
    const presence = new Presence(delivery);
    presence.online('s1', 'many', 0);
    presence.online('s2', 'many', 0);
    presence.mark('g.3'); // before anyone joined it
    for (let g = 0; g < 1_000; g++) presence.join('s1', `g.${g}`, 0);
    presence.join('s2', 'g.5', 0);
    presence.mark('g.5');
    assert.deepEqual(new Set(presence.markedGroupsOf('many')), new Set(['g.3', 'g.5']));
    assert.equal(held(presence).indexed, 2);

    presence.leave('s1', 'g.5'); // its other connection is still in it
    assert.deepEqual(new Set(presence.markedGroupsOf('many')), new Set(['g.3', 'g.5']));
    presence.offline('s2');
    assert.deepEqual([...presence.markedGroupsOf('many')], ['g.3']);
    presence.unmark('g.3');
    assert.equal(held(presence).indexed, 0);
    presence.offline('s1');
    assert.deepEqual(held(presence), { users: 0, indexed: 0 });
    assert.equal((presence as unknown as { marks: { memberships: Map<string, number> } }).marks.memberships.size, 0, 'nor its count of groups');
  });
});

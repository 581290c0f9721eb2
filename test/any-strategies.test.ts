/**
 * The member picks of `any` on one process (src/broker/any-strategies.ts), as sequences: the
 * integration tests (broker-any, messaging-any) count shares over real deliveries; these pin
 * the order itself.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GroupMembers, LEAST_CONNECTIONS_SAMPLE, type Member } from '../src/broker/any-strategies.js';

function group(weights: Record<string, number>): GroupMembers<Member> {
  const members = new GroupMembers<Member>();
  for (const [sid, weight] of Object.entries(weights)) members.add({ sid, user: `user-${sid}`, weight });
  return members;
}

const none = (): number => 0;

function picks(members: GroupMembers<Member>, n: number, strategy: 'weighted' | 'round_robin', eligible?: (m: Member) => boolean): string[] {
  return Array.from({ length: n }, () => members.pick(strategy, none, eligible)?.sid ?? '-');
}

describe('any: the pick of a member', () => {
  test('weighted is smooth, as nginx\'s: weights 5, 1, 1 give a a b a c a a, and again', () => {
    assert.deepEqual(picks(group({ a: 5, b: 1, c: 1 }), 14, 'weighted'), [...'aabacaa', ...'aabacaa']);
  });

  test('weighted: a member without room sits the round out and keeps its standing; one that joins starts from zero, one that leaves takes its own away', () => {
    const members = group({ a: 2, b: 1 });
    assert.deepEqual(picks(members, 3, 'weighted'), ['a', 'b', 'a']);
    assert.deepEqual(picks(members, 2, 'weighted', (m) => m.sid !== 'a'), ['b', 'b']);
    members.add({ sid: 'c', user: 'user-c', weight: 1 });
    members.delete('b');
    assert.deepEqual(picks(members, 6, 'weighted'), ['a', 'c', 'a', 'a', 'c', 'a']);
  });

  test('weighted: a member that joins again with another weight keeps its place and takes the new weight', () => {
    const members = group({ a: 1, b: 1 });
    members.add({ sid: 'b', user: 'user-b', weight: 3 });
    assert.deepEqual(picks(members, 8, 'weighted'), ['b', 'a', 'b', 'b', 'b', 'a', 'b', 'b']);
  });

  test('weighted falls back to turns when the running sums overflow a double, and keeps delivering', () => {
    assert.deepEqual(picks(group({ a: 1e308, b: 1e308, c: 1 }), 6, 'weighted'), ['a', 'b', 'c', 'a', 'b', 'c']);
  });

  test('nobody eligible: null, for every strategy', () => {
    const members = group({ a: 1, b: 1 });
    for (const strategy of ['weighted', 'round_robin', 'least_connections'] as const) assert.equal(members.pick(strategy, none, () => false), null, strategy);
  });

  test(`least_connections takes the least loaded of the next ${LEAST_CONNECTIONS_SAMPLE} eligible members in turn`, () => {
    const weights = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`m${i}`, 1]));
    const members = group(weights);
    // m30 is the least loaded of all but outside the first sample; m5 is the least of it.
    const load = (user: string): number => (user === 'user-m30' ? 0 : user === 'user-m5' ? 1 : 2);
    assert.equal(members.pick('least_connections', load)?.sid, 'm5');
  });

  test('round_robin: a member that leaves does not cost the next one its turn', () => {
    const members = group({ a: 1, b: 1, c: 1, d: 1 });
    assert.deepEqual(picks(members, 2, 'round_robin'), ['a', 'b']);
    members.delete('a');
    assert.deepEqual(picks(members, 4, 'round_robin'), ['c', 'd', 'b', 'c']);
  });

  test('a pick costs the same in a group whose members come and go between picks', (context) => {
    // A copy of the member list at the first pick after each join or leave made every `any`
    // cost the whole group under churn (a member joining and leaving in a loop).
    const MEMBERS = 10_000;
    const PICKS = 5_000;
    const members = group(Object.fromEntries(Array.from({ length: MEMBERS }, (_, i) => [`m${i}`, 1])));
    const time = (churn: boolean): number => {
      const start = performance.now();
      for (let i = 0; i < PICKS; i++) {
        if (churn) {
          members.add({ sid: 'flapping', user: 'user-flapping', weight: 1 });
          members.delete('flapping');
        }
        assert.notEqual(members.pick('round_robin', none), null);
      }
      return performance.now() - start;
    };
    // The fastest of three each, in turn: one pause of a loaded machine (20 ms and more) failed a single pair.
    let [still, churning] = [Infinity, Infinity];
    for (let round = 0; round < 3; round++) {
      still = Math.min(still, time(false));
      churning = Math.min(churning, time(true));
    }
    assert.equal(members.size, MEMBERS);
    context.diagnostic(`${PICKS} picks in a group of ${MEMBERS}: ${churning.toFixed(1)} ms with a member joining and leaving before each, ${still.toFixed(1)} ms without`);
    assert.ok(churning < 3 * still + 20, `${PICKS} picks in a group of ${MEMBERS}: ${churning.toFixed(1)} ms with a member joining and leaving before each, ${still.toFixed(1)} ms without`);
  });
});

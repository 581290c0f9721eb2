import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { msgsIn, startBroker, type TestBroker } from './helpers/broker.js';

/** Names that are also properties of every plain object: a lookup keyed by them must not find Object.prototype. */
const HOSTILE = ['constructor', '__proto__', 'toString', 'hasOwnProperty'] as const;

describe('broker: user ids and group names that are Object.prototype properties', () => {
  let t: TestBroker;
  let refs = 0;
  before(async () => {
    // JSON.parse makes `__proto__` an own key, as a YAML file does (an object literal would set the prototype).
    t = await startBroker({
      delivery: {
        weights: JSON.parse('{"__proto__": 3, "toString": 2}') as Record<string, number>,
        group_strategies: JSON.parse('{"__proto__": "weighted", "constructor": "least_connections", "toString": "weighted", "hasOwnProperty": "round_robin"}') as Record<string, string>,
      },
    });
    for (const [i, user] of HOSTILE.entries()) t.link.online(i % 2, `${user}-1`, user);
  });
  after(() => t.close());

  /** The sids that got `count` any messages to `group` (each CRITICAL, so delivered as it is stored), acknowledged at once. */
  async function anys(group: string, count: number, strategy?: string): Promise<string[]> {
    const sids: string[] = [];
    for (let i = 0; i < count; i++) {
      const ref = `r${refs++}`;
      const before = t.link.calls.length;
      t.link.any(0, 'sender-1', 'sender', group, ref, { ref, pri: 3, ...(strategy ? { strategy } : {}) });
      const answer = await t.link.answerTo(ref);
      assert.equal(answer.op, 'senderAck');
      const delivery = t.link.calls.slice(before).find((c) => c.op === 'deliverToSid');
      assert.ok(delivery && delivery.op === 'deliverToSid', `any ${i} to ${group} was delivered`);
      const [msg] = msgsIn(delivery.frame);
      const user = HOSTILE.find((u) => delivery.sid === `${u}-1`)!;
      t.link.ack(delivery.shard, delivery.sid, user, msg!.id as string);
      sids.push(delivery.sid);
    }
    return sids;
  }

  function tally(sids: string[]): Record<string, number> {
    const counts = new Map<string, number>();
    for (const sid of sids) counts.set(sid, (counts.get(sid) ?? 0) + 1);
    return Object.fromEntries([...counts].sort(([a], [b]) => a.localeCompare(b)));
  }

  test('weighted, round_robin and least_connections keep delivering to members with those names', async () => {
    for (const [i, user] of HOSTILE.entries()) t.link.join(i % 2, `${user}-1`, 'crew');
    // delivery.weights: __proto__ 3, toString 2; constructor and hasOwnProperty have none (1).
    assert.deepEqual(tally(await anys('crew', 14, 'weighted')), { '__proto__-1': 6, 'constructor-1': 2, 'hasOwnProperty-1': 2, 'toString-1': 4 });
    assert.deepEqual(tally(await anys('crew', 8, 'round_robin')), { '__proto__-1': 2, 'constructor-1': 2, 'hasOwnProperty-1': 2, 'toString-1': 2 });
    assert.deepEqual(tally(await anys('crew', 8, 'least_connections')), { '__proto__-1': 2, 'constructor-1': 2, 'hasOwnProperty-1': 2, 'toString-1': 2 });
  });

  test('groups with those names use the strategy delivery.group_strategies gives them', async () => {
    for (const group of HOSTILE) {
      t.link.join(0, 'constructor-1', group);
      t.link.join(1, '__proto__-1', group);
    }
    // weighted: 3 to 1 by delivery.weights; round_robin and least_connections (all acknowledged): 2 and 2.
    assert.deepEqual(tally(await anys('__proto__', 4)), { '__proto__-1': 3, 'constructor-1': 1 });
    assert.deepEqual(tally(await anys('toString', 4)), { '__proto__-1': 3, 'constructor-1': 1 });
    assert.deepEqual(tally(await anys('constructor', 4)), { '__proto__-1': 2, 'constructor-1': 2 });
    assert.deepEqual(tally(await anys('hasOwnProperty', 4)), { '__proto__-1': 2, 'constructor-1': 2 });
  });

  test('a user with such a name gets its direct messages', async () => {
    for (const user of HOSTILE) {
      const id = await t.broker.send(user, `for ${user}`, { pri: 3 });
      const delivered = t.link.all('deliverToUser', (c) => c.user === user && msgsIn(c.frame)[0]!.id === id);
      assert.equal(delivered.length, 1, user);
      t.link.ack(delivered[0]!.shard, `${user}-1`, user, id);
    }
  });
});

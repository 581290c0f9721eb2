/**
 * Who is refused while a shard's rings (to the broker, to the other shards) are backed up
 * (src/shard/backpressure.ts): each connection keeps an allowance per episode of overload, so
 * one that floods is refused and one that asks little is not, and the connections of one address
 * share one, so a flood spread over many of them is refused too; past twice the bound, everyone is.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ADDRESS_ALLOWANCE, ALLOWANCE, Backpressure } from '../src/shard/backpressure.js';
import { newConnection } from '../src/shard/connection.js';

const LIMIT = 1000;

/** `conn(sid)` comes from an address of its own unless one is given. */
function setup(): { link: { backlog: number; backlogEmptied: number }; gate: Backpressure; conn: (sid: string, address?: string) => ReturnType<typeof newConnection> } {
  const link = { backlog: 0, backlogEmptied: 0 };
  const conn = (sid: string, address = `address of ${sid}`): ReturnType<typeof newConnection> => {
    const c = newConnection(sid, sid, null, 10, 0);
    c.address = address;
    return c;
  };
  return { link, gate: new Backpressure(() => link.backlog, () => link.backlogEmptied, LIMIT), conn };
}

/** How many of `n` records in a row `conn` may send. */
function taken(gate: Backpressure, conn: ReturnType<typeof newConnection>, n: number): number {
  let ok = 0;
  for (let i = 0; i < n; i++) if (!gate.refuses(conn)) ok++;
  return ok;
}

describe('back-pressure toward the broker, per connection', () => {
  test('under the bound nothing is refused, and nothing is counted against anyone', () => {
    const { link, gate, conn } = setup();
    const a = conn('a');
    link.backlog = LIMIT;
    assert.equal(taken(gate, a, 1000), 1000);
    link.backlog = LIMIT + 1;
    assert.equal(taken(gate, a, 100), ALLOWANCE, 'its whole allowance is left once over the bound');
  });

  test('over the bound a flooder is refused past its allowance while another connection still gets its own; past twice the bound everyone is refused', () => {
    const { link, gate, conn } = setup();
    const [flooder, quiet] = [conn('flooder'), conn('quiet')];
    link.backlog = LIMIT + 1;
    assert.equal(taken(gate, flooder, 3000), ALLOWANCE);
    assert.equal(taken(gate, quiet, 1), 1);
    link.backlog = 2 * LIMIT + 1;
    assert.equal(taken(gate, quiet, 1), 0);
  });

  test('an episode ends when the overflow empties or is seen at half the bound, not when it dips just under the bound', () => {
    const { link, gate, conn } = setup();
    const flooder = conn('flooder');
    link.backlog = LIMIT + 1;
    taken(gate, flooder, 100);
    link.backlog = LIMIT - 1;
    assert.equal(taken(gate, flooder, 1), 1, 'under the bound: taken');
    link.backlog = LIMIT + 1;
    assert.equal(taken(gate, flooder, 1), 0, 'the same episode: its allowance is spent');
    link.backlogEmptied++;
    assert.equal(taken(gate, flooder, 100), ALLOWANCE, 'the overflow emptied meanwhile: a new episode');
    link.backlog = LIMIT / 2;
    taken(gate, flooder, 1);
    link.backlog = LIMIT + 1;
    assert.equal(taken(gate, flooder, 100), ALLOWANCE, 'seen at half the bound: a new episode');
  });
});

test('an ack of several ids spends one record of the allowance per id: one of more ids than the allowance is refused whole', () => {
  const { link, gate, conn } = setup();
  const [batcher, single] = [conn('batcher'), conn('single')];
  link.backlog = LIMIT + 1;
  assert.equal(gate.refuses(batcher, ALLOWANCE + 1), true);
  assert.equal(gate.refuses(single, ALLOWANCE), false);
  assert.equal(gate.refuses(single, 1), true, 'its allowance spent by one frame of ids');
});

describe('back-pressure toward the broker, per address', () => {
  test('connections of one address, each under its own allowance, are refused once they spent the address\'s together; another address still gets its own', () => {
    const { link, gate, conn } = setup();
    link.backlog = LIMIT + 1;
    const spread = Array.from({ length: 3 * (ADDRESS_ALLOWANCE / ALLOWANCE) }, (_, i) => conn(`flooder${i}`, '192.0.2.7'));
    const takenEach = spread.map((c) => taken(gate, c, ALLOWANCE - 1));
    assert.equal(takenEach.reduce((a, b) => a + b, 0), ADDRESS_ALLOWANCE, 'the address\'s allowance, over all its connections');
    assert.equal(takenEach.at(-1), 0, 'the last of them is refused from its first record');
    assert.equal(taken(gate, conn('quiet', '198.51.100.1'), 1), 1);
  });

  test('a new episode gives the address its allowance again', () => {
    const { link, gate, conn } = setup();
    link.backlog = LIMIT + 1;
    const spread = Array.from({ length: 8 }, (_, i) => conn(`c${i}`, '192.0.2.7'));
    for (const c of spread) taken(gate, c, ALLOWANCE);
    assert.equal(taken(gate, conn('late', '192.0.2.7'), 1), 0);
    link.backlogEmptied++;
    assert.equal(taken(gate, conn('later', '192.0.2.7'), 100), ALLOWANCE, 'the overflow emptied meanwhile: a new episode');
  });
});

/**
 * Who is refused while a shard's rings (to the broker, to the other shards) are backed up
 * (src/shard/backpressure.ts): each connection keeps an allowance per episode of overload, so
 * one that floods is refused and one that asks little is not; past twice the bound, everyone is.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ALLOWANCE, Backpressure } from '../src/shard/backpressure.js';
import { newConnection } from '../src/shard/connection.js';

const LIMIT = 1000;

function setup(): { link: { backlog: number; backlogEmptied: number }; gate: Backpressure; conn: (sid: string) => ReturnType<typeof newConnection> } {
  const link = { backlog: 0, backlogEmptied: 0 };
  return { link, gate: new Backpressure(() => link.backlog, () => link.backlogEmptied, LIMIT), conn: (sid) => newConnection(sid, sid, null, 10, 0) };
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

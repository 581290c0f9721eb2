/**
 * websocket.limits.max_connections_per_user: one identity cannot take every connection the
 * server allows. Over the cap a new connection gets `err E_RATE_LIMITED` naming the limit and
 * close 4029 instead of its welcome; once one of the user's connections closes, there is room.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, member } from './helpers/client.js';
import { until } from './helpers/messaging.js';
import { startInProcess } from './helpers/server.js';
import type { RunningServer } from '../src/index.js';

describe('connections per user (websocket.limits.max_connections_per_user)', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { limits: { max_connections_per_user: 3 } } });
  });
  after(() => server.close());

  test('past the cap, across both shards, a new connection of the user is refused with E_RATE_LIMITED and 4029; other users are not; a closed one makes room', async () => {
    const held = await Promise.all([1, 2, 3].map(() => member(server.port, 'hog')));
    const refused = await connect(server.port, { query: 'user=hog' });
    const err = await refused.next((f) => f.op === 'err');
    assert.equal(err.code, 'E_RATE_LIMITED');
    assert.match(String(err.message), /hog holds 3 connections already \(websocket\.limits\.max_connections_per_user\)/);
    assert.equal((await refused.closed).code, 4029);
    assert.ok(!refused.frames.some((f) => f.op === 'welcome'), 'no welcome');
    const other = await member(server.port, 'someone-else');
    held[0]!.close();
    await held[0]!.closed;
    // The broker hears of the close through the shard's ring: room comes within a moment.
    const back = await until(async () => {
      const c = await connect(server.port, { query: 'user=hog' });
      const first = await c.next((f) => f.op === 'welcome' || f.op === 'err');
      if (first.op === 'welcome') return c;
      await c.closed;
      return undefined;
    }, 'a fourth connection of hog after one closed');
    for (const c of [...held.slice(1), other, back]) c.close();
  });
});

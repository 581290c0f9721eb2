/**
 * Session and message ids (issue 8, point 9): clients de-duplicate by id, so an id the server
 * handed out once never comes back, not after a shard restart either, and a session id is
 * never also a message id.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { member } from './helpers/client.js';
import { startInProcess } from './helpers/server.js';
import type { RunningServer } from '../src/index.js';

describe('ids', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { server: { shards: 1 } } });
  });
  after(() => server.close());

  /** The session id of a new connection and the id of its first pub. */
  async function sessionAndPub(user: string): Promise<{ sid: string; pub: string }> {
    const client = await member(server.port, user, ['g']);
    client.send({ op: 'pub', group: 'g', data: 1, ref: 'p' });
    const ack = await client.next((f) => f.op === 'ack' && f.ref === 'p');
    client.close();
    await client.closed;
    return { sid: client.welcome.sid as string, pub: ack.id as string };
  }

  test('session ids and message ids never repeat, across a shard restart too, and never equal each other', async () => {
    const before = [await sessionAndPub('a'), await sessionAndPub('b')];
    const restarted = server.whenRestarted(0, 1);
    server.injectShardCrash(0);
    await restarted;
    const afterRestart = [await sessionAndPub('c'), await sessionAndPub('d')];
    const ids = [...before, ...afterRestart].flatMap(({ sid, pub }) => [sid, pub]);
    assert.equal(new Set(ids).size, ids.length, `an id repeats: ${ids.join(' ')}`);
  });
});

/**
 * A backlog's share for another node (src/cluster/channels.ts, DELIVER_USER_BATCH) on a real
 * Redis: cut into records of at most the given bytes of frames, a larger message alone, and
 * heard by the other node in queue order.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Channels, type BatchEntry, type ChannelHandlers } from '../src/cluster/channels.js';
import { Keys } from '../src/cluster/keys.js';
import { until } from './helpers/messaging.js';
import { announceSkip, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';

const skip = announceSkip('cluster-batch-records.test');

/** A handler that keeps the batches it hears; anything else fails the test. */
function listening(heard: Array<{ user: string; ids: string[] }>): ChannelHandlers {
  const unexpected = (what: string) => (): never => assert.fail(`unexpected ${what}`);
  return {
    groupPub: unexpected('group pub'),
    presence: unexpected('presence record'),
    nodeRecord: unexpected('single delivery record'),
    historyJoined: unexpected('history answer'),
    malformed: unexpected('malformed record'),
    userBatch: (user, entries) => heard.push({ user, ids: entries.map(([id]) => id) }),
  };
}

describe('backlog records between nodes', { skip }, () => {
  let redis: PrivateRedis;
  let sender: Channels;
  const heard: Array<{ user: string; ids: string[] }> = [];

  before(async () => {
    redis = await startPrivateRedis();
    const keys = new Keys('ocs:');
    sender = new Channels(redis.client(), redis.client(), keys, 'sendernode0000', listening([]));
    const receiver = new Channels(redis.client(), redis.client(), keys, 'receivernode00', listening(heard));
    await receiver.resubscribe();
  });
  after(() => redis?.stop());

  const entry = (id: string, bytes: number): BatchEntry => [id, 'x'.repeat(bytes), Date.now() + 1000];

  test('records hold at most the given bytes of frames, in queue order; a larger message goes alone', async () => {
    heard.length = 0;
    const entries = [entry('a', 40), entry('b', 40), entry('c', 40), entry('big', 250), entry('d', 10), entry('e', 10)];
    await sender.publishUserBatches('receivernode00', 'carol', entries, 100);
    await until(() => (heard.length === 4 ? true : undefined), 'four records');
    assert.deepEqual(heard, [
      { user: 'carol', ids: ['a', 'b'] },
      { user: 'carol', ids: ['c'] },
      { user: 'carol', ids: ['big'] },
      { user: 'carol', ids: ['d', 'e'] },
    ]);
  });

  test('a backlog that fits is one record', async () => {
    heard.length = 0;
    await sender.publishUserBatches('receivernode00', 'dave', [entry('1', 10), entry('2', 10), entry('3', 10)], 1000);
    await until(() => (heard.length === 1 ? true : undefined), 'one record');
    assert.deepEqual(heard, [{ user: 'dave', ids: ['1', '2', '3'] }]);
  });
});

import assert from 'node:assert/strict';
import { afterEach, describe, mock, test } from 'node:test';
import { BrokerGroups } from '../src/broker/groups.js';
import { UncommittedRemovals } from '../src/broker/restore.js';
import { loadConfig } from '../src/config/load.js';
import type { MessageStore } from '../src/store/store.js';
import { createLogger } from '../src/util/logger.js';
import { RecordingLink } from './helpers/broker.js';

/**
 * An idle server should not wake for timers that have nothing to do: each of these is armed
 * only while there is work for it. Timers are mocked, so nothing here waits or races.
 */
describe('timers armed only while there is work', () => {
  afterEach(() => mock.timers.reset());

  test('the history ttl sweep runs only while a kept message has a ttl', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    const history = [
      { pattern: 'room.*', size: 10, ttl: 0 },
      { pattern: 'short.*', size: 10, ttl: 1 },
    ];
    const { config } = loadConfig({ env: {}, overrides: { websocket: { history } } });
    const groups = new BrokerGroups({ config, store: null, instance: 'test', link: new RecordingLink(), log: createLogger('silent') }, () => false);
    groups.start();
    try {
      assert.equal(groups.sweeping, false, 'nothing kept: no sweep');
      const now = Date.now();
      groups.history!.append('room.a', 'm1', 'alice', '{}', 0, now);
      assert.equal(groups.sweeping, false, 'what is kept has no ttl');
      groups.history!.append('short.a', 'm2', 'alice', '{}', 0, now - 5000);
      assert.equal(groups.sweeping, true);
      mock.timers.tick(1000);
      assert.equal(groups.history!.stats.expired, 1);
      assert.equal(groups.sweeping, false, 'the last message under a ttl expired');
      groups.history!.append('short.b', 'm3', 'alice', '{}', 0, now);
      assert.equal(groups.sweeping, true, 'armed again');
    } finally {
      await groups.stop();
    }
    assert.equal(groups.sweeping, false);
  });

  test('removals made while standing by are settled by a timer armed only while some wait', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    let flush = (): void => {};
    const store = { flushed: () => new Promise<void>((resolve) => (flush = resolve)) } as unknown as MessageStore;
    const removals = new UncommittedRemovals(store);
    assert.equal(removals.pending, false, 'nothing removed: no timer');
    removals.add('a');
    assert.equal(removals.pending, true);
    mock.timers.tick(1000);
    assert.equal(removals.pending, false, 'settling: it waits for the flush, not the timer');
    assert.equal(removals.has('a'), true, 'not committed yet');
    flush();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(removals.has('a'), false, 'committed: forgotten');
    removals.add('b');
    removals.stop();
    assert.equal(removals.pending, false);
  });
});

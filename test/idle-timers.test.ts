import assert from 'node:assert/strict';
import { afterEach, describe, mock, test } from 'node:test';
import { BrokerGroups } from '../src/broker/groups.js';
import { UncommittedRemovals } from '../src/broker/restore.js';
import { loadConfig } from '../src/config/load.js';
import { createShardTable, Link, ShardTable } from '../src/shared/shard-table.js';
import { OverflowGauges } from '../src/shard/overflow-gauges.js';
import type { MessageStore } from '../src/store/store.js';
import { createLogger } from '../src/util/logger.js';
import { alignedDelay } from '../src/util/timer-grid.js';
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
      await groups.stop(true);
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

  test("a shard's overflow gauges are published while records wait, once more when none does, and not otherwise", () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    const table = new ShardTable(createShardTable(1));
    const toBroker = { backlog: 0, oldestQueuedAt: 0 };
    const toShards = { backlog: 0, oldestQueuedAt: 0 };
    const gauges = new OverflowGauges({ shard: 0, table, toBroker, toShards });
    const now = Date.now();
    const shown = (): number => table.linkState(0, Link.TO_SHARDS, now).backlog_bytes;
    Object.assign(toShards, { backlog: 500, oldestQueuedAt: now - 100 });
    mock.timers.tick(10_000);
    assert.equal(shown(), 0, 'not published before a record is queued');
    gauges.queued();
    assert.equal(shown(), 500, 'published at once');
    toShards.backlog = 800;
    gauges.queued();
    mock.timers.tick(250);
    assert.equal(shown(), 800, 'and again while records wait');
    Object.assign(toShards, { backlog: 0, oldestQueuedAt: 0 });
    mock.timers.tick(250);
    assert.equal(shown(), 0, 'the drain is shown');
    toShards.backlog = 300; // not queued through the writer: nothing publishes it
    mock.timers.tick(10_000);
    assert.equal(shown(), 0, 'no timer left once nothing waited');
    gauges.stop();
    gauges.queued();
    assert.equal(shown(), 0, 'stopped');
  });
});

describe('periodic timers on one grid', () => {
  test('a timer falls due at the next multiple of its period, so a thread runs its periodic timers in one wake-up', () => {
    assert.equal(alignedDelay(1000, 12_345_250), 750);
    assert.equal(alignedDelay(250, 12_345_250), 250, 'on a boundary: the next one');
    assert.equal(alignedDelay(1000, 12_345_000), 1000);
    assert.equal(12_345_250 + alignedDelay(250, 12_345_250), 12_345_500, 'a 250 ms timer lands on the 1 s grid every fourth time');
  });

  test('a boundary closer than a quarter period is skipped: a timer that fired a little early does not run again at once', () => {
    assert.equal(alignedDelay(1000, 12_345_999), 1001);
    assert.equal(alignedDelay(1000, 12_345_760), 1240);
    assert.equal(alignedDelay(1000, 12_345_740), 260);
  });
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { member, type Frame } from './helpers/client.js';
import { joinGroup as join, nextMsgs } from './helpers/history.js';
import { startInProcess, startProcess, tempDataDir, testConfig } from './helpers/server.js';

const rules = [{ pattern: 'room.*', size: 100 }];

/** Publishes `count` messages to `group` and waits for them: their frames. */
async function publish(port: number, group: string, count: number): Promise<Frame[]> {
  const c = await member(port, 'writer', [group]);
  for (let i = 0; i < count; i++) c.send({ op: 'pub', group, data: i });
  const msgs = await nextMsgs(c, count);
  c.close();
  return msgs;
}

describe('history across restarts', () => {
  test('without history.persist a restart changes the epoch: a client with the old one is told recovered: false', async () => {
    const dir = tempDataDir();
    const config = { websocket: { history: rules }, store: { data_dir: dir } };
    const first = await startInProcess(config);
    const before = await publish(first.port, 'room.a', 3);
    await first.close();
    const second = await startInProcess(config);
    try {
      const c = await member(second.port, 'back');
      const { joined, replayed } = await join(c, 'room.a', { offset: 3, epoch: before[0]!.epoch as string });
      assert.equal(joined.recovered, false);
      assert.notEqual(joined.epoch, before[0]!.epoch);
      assert.equal(joined.offset, 0);
      assert.deepEqual(replayed, []);
      c.close();
    } finally {
      await second.close();
    }
  });

  test('with history.persist a clean restart keeps the epoch, the offsets and the messages: recovery works across it', async () => {
    const dir = tempDataDir();
    const config = { websocket: { history: rules }, history: { persist: true }, store: { data_dir: dir } };
    const first = await startInProcess(config);
    const before = await publish(first.port, 'room.a', 5);
    await first.close();
    const second = await startInProcess(config);
    try {
      const c = await member(second.port, 'back');
      const { joined, replayed } = await join(c, 'room.a', { offset: 2, epoch: before[0]!.epoch as string });
      assert.equal(joined.recovered, true);
      assert.equal(joined.epoch, before[0]!.epoch);
      assert.equal(joined.offset, 5);
      assert.deepEqual(replayed.map((m) => [m.offset, m.data]), [[3, 2], [4, 3], [5, 4]]);
      c.send({ op: 'pub', group: 'room.a', data: 'after' });
      const next = await c.next((f) => f.op === 'msg');
      assert.equal(next.offset, 6);
      assert.equal(next.epoch, before[0]!.epoch);
      c.close();
    } finally {
      await second.close();
    }
  });

  test('with history.persist a crash (SIGKILL) changes the epoch: offsets given out before it may not all be stored', async () => {
    const config = testConfig({ websocket: { history: rules }, history: { persist: true } });
    const first = await startProcess(config);
    const before = await publish(first.port, 'room.k', 3);
    assert.equal(await first.stop('SIGKILL'), null);
    const second = await startProcess(config);
    try {
      const c = await member(second.port, 'back');
      const { joined } = await join(c, 'room.k', { offset: 3, epoch: before[0]!.epoch as string });
      assert.equal(joined.recovered, false);
      assert.notEqual(joined.epoch, before[0]!.epoch);
      assert.ok((joined.offset as number) <= 3, 'the stored messages are kept, under the new epoch');
      assert.ok(second.logs.some((l) => typeof l.msg === 'string' && l.msg.includes('unclean stop')) || joined.offset === 0);
      c.close();
    } finally {
      await second.stop();
    }
  });
});

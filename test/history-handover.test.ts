/**
 * Group history (history.persist) when two processes run on one store, as a pm2 reload runs
 * them: the second stands by on the store's lease while the first drains. The second holds its
 * history ops until the first has stopped and left its history, so that the first's clients
 * recover exactly on the second (src/broker/history-hold.ts); past history.handover_wait it
 * goes on under epochs of its own. Neither may make a client take one process's offsets for
 * the other's, and what the store keeps afterwards is the history of the process that goes
 * on. Real processes, real LMDB in a temp directory.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { member, type Frame } from './helpers/client.js';
import { joinGroup as join, msgsOf, nextMsgs } from './helpers/history.js';
import { until } from './helpers/messaging.js';
import { startProcess, tempDataDir, testConfig, type ServerProcess } from './helpers/server.js';

const TAKEN_OVER = 'store lease taken over: this process delivers the stored messages now';
const STANDBYS_GONE = 'processes that stood by on the store are gone: this process delivers what they stored';

/** Publishes `data` to `group` on the server at `port` and waits for its message: the frame. */
async function publish(port: number, group: string, data: unknown[]): Promise<Frame[]> {
  const c = await member(port, `writer-${Math.random()}`, [group]);
  for (const d of data) c.send({ op: 'pub', group, data: d });
  const msgs = await nextMsgs(c, data.length);
  c.close();
  return msgs;
}

/** A store with history.persist for room.*; `handoverWait`: history.handover_wait, when not the default. */
function persisting(dataDir: string, handoverWait?: number): () => Record<string, unknown> {
  const history = handoverWait === undefined ? { persist: true } : { persist: true, handover_wait: handoverWait };
  return () => testConfig({ store: { data_dir: dataDir }, websocket: { history: [{ pattern: 'room.*', size: 100 }] }, history });
}

/**
 * An aborted reload: `holder` publishes a1 and a2 to room.a; a second process starts on its
 * store, loads the history past handover_wait (a join), and stops first. Returns the holder's epoch.
 */
async function abortedReload(holder: ServerProcess, config: () => Record<string, unknown>): Promise<string> {
  const epoch = (await publish(holder.port, 'room.a', ['a1', 'a2']))[0]!.epoch as string;
  const standby = await startProcess(config());
  const c = await member(standby.port, 'reader');
  assert.notEqual((await join(c, 'room.a')).joined.epoch, epoch, 'it loaded the history under epochs of its own');
  c.close();
  assert.equal(await standby.stop('SIGTERM'), 0, standby.stderr());
  return epoch;
}

describe('history with history.persist across a hand-over of the store', () => {
  test('a pm2 reload: the new process answers history ops once the old one has stopped, under the old epochs, so the old one\'s clients recover exactly; what it held gets the next offsets', async () => {
    const dataDir = tempDataDir();
    const config = persisting(dataDir);
    const first = await startProcess(config());
    let second: ServerProcess | null = null;
    try {
      const before = await publish(first.port, 'room.a', ['a1', 'a2', 'a3']);
      const epoch = before[0]!.epoch as string;
      second = await startProcess(config());
      // A client the old process drained, back on the new one, and a publisher there: both wait.
      const back = await member(second.port, 'back');
      back.send({ op: 'join', group: 'room.a', ref: 'j', since: { offset: 1, epoch } });
      const writer = await member(second.port, 'writer');
      writer.send({ op: 'join', group: 'room.a', ref: 'wj' });
      writer.send({ op: 'pub', group: 'room.a', data: 'new', ref: 'p' });
      writer.send({ op: 'history', group: 'room.a', ref: 'h' });
      await assert.rejects(back.next((f) => f.ref === 'j', 300), /no matching frame/, 'the join waits for the old process\'s history');
      // The old process goes on until it stops; what it publishes meanwhile is in the replay.
      await publish(first.port, 'room.a', ['old 4']);
      assert.equal(await first.stop('SIGTERM'), 0, first.stderr());
      await until(() => second!.logs.find((line) => line.msg === TAKEN_OVER), 'the take-over');
      const replayed: Frame[] = [];
      let joined: Frame;
      for (;;) {
        const frame = await back.next();
        if (frame.op === 'joined') {
          joined = frame;
          break;
        }
        replayed.push(...msgsOf(frame));
      }
      assert.deepEqual([joined.recovered, joined.offset, joined.epoch], [true, 4, epoch], JSON.stringify(joined));
      assert.deepEqual(replayed.map((m) => [m.offset, m.data, m.epoch]), [[2, 'a2', epoch], [3, 'a3', epoch], [4, 'old 4', epoch]]);
      assert.deepEqual([(await writer.next((f) => f.ref === 'wj')).offset, (await writer.next((f) => f.ref === 'p')).offset], [4, 5], 'joined at the old top, then the pub\'s ack');
      const live = await back.next((f) => f.op === 'msg');
      assert.deepEqual([live.offset, live.data, live.epoch], [5, 'new', epoch]);
      const page = await writer.next((f) => f.ref === 'h');
      assert.deepEqual((page.msgs as Frame[]).map((m) => [m.offset, m.data, m.epoch]), [[1, 'a1', epoch], [2, 'a2', epoch], [3, 'a3', epoch], [4, 'old 4', epoch], [5, 'new', epoch]]);
      const held = second.logs.find((line) => line.msg === 'group history loaded; the ops held for it handled');
      assert.deepEqual([held?.why, held?.records], ['taken over', 4], 'two joins, a pub and a history query held');
      back.close();
      writer.close();
    } finally {
      if (first.child.exitCode === null) await first.stop('SIGTERM');
      if (second !== null) await second.stop('SIGTERM');
    }
  });

  test('past history.handover_wait the process standing by gives every group a new epoch; after the take-over and a clean restart the store holds its history, not the old process\'s', async () => {
    const dataDir = tempDataDir();
    // Each on its own port (same store), so that each client reaches the process the test means.
    const config = persisting(dataDir, 0.5);
    const first = await startProcess(config());
    let standby: ServerProcess | null = null;
    let third: ServerProcess | null = null;
    try {
      const before = await publish(first.port, 'room.a', ['a1', 'a2', 'a3']);
      const oldEpoch = before[0]!.epoch as string;
      const second = (standby = await startProcess(config()));
      assert.equal(second.logs.find((line) => line.msg === 'ready')!.ownsStore, false);
      // The standing-by process: the messages kept, under an epoch of its own.
      const c = await member(second.port, 'reader');
      const { joined, replayed } = await join(c, 'room.a', { offset: 1, epoch: oldEpoch });
      const newEpoch = joined.epoch as string;
      assert.notEqual(newEpoch, oldEpoch);
      assert.equal(joined.recovered, false, 'another process\'s offsets are not vouched for');
      assert.deepEqual(replayed, []);
      c.send({ op: 'history', group: 'room.a', ref: 'h' });
      const page = await c.next((f) => f.ref === 'h');
      assert.deepEqual((page.msgs as Frame[]).map((m) => [m.offset, m.data, m.epoch]), [[1, 'a1', newEpoch], [2, 'a2', newEpoch], [3, 'a3', newEpoch]]);
      c.close();
      // Both go on publishing, each under its own epoch; the old one writes last.
      const fromStandby = await publish(second.port, 'room.a', ['new 4']);
      assert.deepEqual([fromStandby[0]!.offset, fromStandby[0]!.epoch], [4, newEpoch]);
      const fromOld = await publish(first.port, 'room.a', ['old 4']);
      assert.deepEqual([fromOld[0]!.offset, fromOld[0]!.epoch], [4, oldEpoch]);
      assert.equal(await first.stop('SIGTERM'), 0, first.stderr());
      await until(() => second.logs.find((line) => line.msg === TAKEN_OVER), 'the take-over');
      // The old process's clients, reconnecting to the new one: told to reload, never given its messages as theirs.
      const oldClient = await member(second.port, 'old-client');
      assert.equal((await join(oldClient, 'room.a', { offset: 3, epoch: oldEpoch })).joined.recovered, false);
      oldClient.close();
      assert.equal(await second.stop('SIGTERM'), 0, second.stderr());
      third = await startProcess(config());
      const back = await member(third.port, 'back');
      const recovered = await join(back, 'room.a', { offset: 2, epoch: newEpoch });
      assert.equal(recovered.joined.recovered, true, JSON.stringify(recovered.joined));
      assert.deepEqual([recovered.joined.offset, recovered.joined.epoch], [4, newEpoch]);
      assert.deepEqual(recovered.replayed.map((m) => [m.offset, m.data]), [[3, 'a3'], [4, 'new 4']]);
      back.close();
    } finally {
      if (first.child.exitCode === null) await first.stop('SIGTERM');
      if (standby !== null && standby.child.exitCode === null) await standby.stop('SIGTERM');
      if (third !== null) await third.stop('SIGTERM');
    }
  });

  test('a process that stood by past history.handover_wait and stopped first does not vouch for the holder\'s epochs: after the holder crashes, every group has a new epoch', async () => {
    const dataDir = tempDataDir();
    const config = persisting(dataDir, 0.5);
    const holder = await startProcess(config());
    let after: ServerProcess | null = null;
    try {
      const epoch = await abortedReload(holder, config);
      // The holder goes on under its epoch, offsets its clients see before the store has them.
      const seen = await publish(holder.port, 'room.a', ['a3']);
      assert.deepEqual([seen[0]!.offset, seen[0]!.epoch], [3, epoch]);
      await holder.stop('SIGKILL');
      after = await startProcess(config());
      const back = await member(after.port, 'back');
      const { joined } = await join(back, 'room.a', { offset: 3, epoch });
      assert.equal(joined.recovered, false, JSON.stringify(joined));
      assert.notEqual(joined.epoch, epoch);
      back.close();
    } finally {
      if (holder.child.exitCode === null) await holder.stop('SIGKILL');
      if (after !== null) await after.stop('SIGTERM');
    }
  });

  test('once such a process is gone, the holder takes the history back: its clean stop keeps its epochs', async () => {
    const dataDir = tempDataDir();
    const config = persisting(dataDir, 0.5);
    const holder = await startProcess(config());
    let after: ServerProcess | null = null;
    try {
      const epoch = await abortedReload(holder, config);
      // At its next renewal of the store's lease (every 3 s).
      await until(() => holder.logs.find((line) => line.msg === STANDBYS_GONE), 'the holder to see the standby gone', 5000);
      await publish(holder.port, 'room.a', ['a3']);
      assert.equal(await holder.stop('SIGTERM'), 0, holder.stderr());
      after = await startProcess(config());
      const back = await member(after.port, 'back');
      const { joined, replayed } = await join(back, 'room.a', { offset: 2, epoch });
      assert.deepEqual([joined.recovered, joined.epoch, replayed.map((m) => m.data)], [true, epoch, ['a3']], JSON.stringify(joined));
      back.close();
    } finally {
      if (holder.child.exitCode === null) await holder.stop('SIGKILL');
      if (after !== null) await after.stop('SIGTERM');
    }
  });
});

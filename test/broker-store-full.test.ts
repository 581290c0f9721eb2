import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { OcsError } from '../src/protocol/errors.js';
import { msgsIn, sleep, startBroker, type TestBroker } from './helpers/broker.js';
import { until } from './helpers/messaging.js';
import { mountSmallDisk } from './helpers/small-disk.js';

const disk = mountSmallDisk('2m');
const DATA = 'x'.repeat(10 * 1024);

describe('broker: a full disk refuses new messages with E_STORE_UNAVAILABLE, and recovers', { skip: typeof disk === 'string' ? disk : false }, () => {
  let t: TestBroker;
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  const small = typeof disk === 'string' ? null : disk;
  let deadId = '';
  let refs = 0;

  before(async () => {
    process.on('unhandledRejection', onUnhandled);
    t = await startBroker({ dataDir: join(small!.dir, 'data'), delivery: { max_stored_per_sender: 100_000 } });
    t.broker.registerProcessor('broken', () => {
      throw new Error('no');
    });
  });
  after(async () => {
    process.off('unhandledRejection', onUnhandled);
    try {
      await t.close();
    } finally {
      small!.unmount();
    }
  });

  /** `count` client sends of 10 KB from `from`, all in one turn; their answers. */
  async function sendMany(from: string, count: number, to = (i: number) => `nobody-${refs}-${i}`) {
    const sent = Array.from({ length: count }, (_, i) => {
      const ref = `r${++refs}`;
      t.link.send(0, `${from}-1`, from, to(i), DATA, { ref });
      return ref;
    });
    return Promise.all(sent.map((ref) => t.link.answerTo(ref)));
  }

  test('while there is room, sends are stored', async () => {
    t.link.send(0, 'ops-1', 'ops', 'kim', { type: 'broken' }, { ref: 'dead' });
    const dead = await t.link.answerTo('dead');
    assert.ok(dead.op === 'senderAck');
    deadId = dead.id;
    const answers = await sendMany('amy', 5, () => 'reader');
    assert.ok(answers.every((a) => a.op === 'senderAck'));
  });

  test('filling the disk: every send is answered, by its ack or by E_STORE_UNAVAILABLE, and nothing rejects unhandled', async () => {
    let refused = 0;
    for (let round = 0; round < 40 && refused === 0; round++) {
      const answers = await sendMany('amy', 20);
      for (const answer of answers) {
        if (answer.op === 'senderAck') continue;
        assert.equal(answer.code, 'E_STORE_UNAVAILABLE', answer.message);
        assert.equal(answer.message, 'message not stored: the store cannot write (disk full or I/O error); send and any are refused until it recovers');
        refused++;
      }
    }
    assert.ok(refused > 0, 'the 2 MiB disk filled up');
    assert.equal(t.store.health.writable, false);
    assert.ok(t.broker.stats.store_unavailable >= refused);
    const [next] = await sendMany('amy', 1);
    assert.equal(next!.op === 'error' && next!.code, 'E_STORE_UNAVAILABLE', 'refused at once while unwritable');
    await assert.rejects(t.broker.send('kim', 'x'), (err: unknown) => err instanceof OcsError && err.code === 'E_STORE_UNAVAILABLE');
    await sleep(50); // an unhandled rejection is reported once the microtasks have run
    assert.deepEqual(unhandled, []);
  });

  test('a requeue while the disk is full is refused (503 unavailable, E_STORE_UNAVAILABLE) and the dead letter stays', async () => {
    const refused = await t.link.adminRequest('post', `/admin/dlq/${deadId}/requeue`);
    assert.deepEqual([refused.status, refused.body.code], [503, 'unavailable']);
    assert.match(String(refused.body.message), /^E_STORE_UNAVAILABLE: /);
    assert.ok(t.store.getDead(deadId));
  });

  test('acks while the disk is full take effect at once, and reach the store once it has room again', async () => {
    t.link.online(1, 'reader-1', 'reader');
    const delivered = await t.link.next('deliverToSid', (c) => c.sid === 'reader-1');
    const ids = msgsIn(delivered.frame).map((m) => m.id as string);
    assert.equal(ids.length, 5, 'stored messages are still delivered (read back from the full disk)');
    for (const id of ids) t.link.ack(1, 'reader-1', 'reader', id);
    assert.equal(t.link.all('error', (c) => c.sid === 'reader-1').length, 0);
    t.link.offline(1, 'reader-1', 'reader');

    small!.grow('64m');
    await until(() => (t.store.health.writable ? true : undefined), 'the store writable again', 5000);
    const answers = await sendMany('amy', 3);
    assert.ok(answers.every((a) => a.op === 'senderAck'), JSON.stringify(answers.filter((a) => a.op !== 'senderAck')));
    await until(() => ([...t.store.loadQueue()].some((m) => ids.includes(m.id)) ? undefined : true), 'the acknowledged messages gone from the store');
    const requeued = await t.link.adminRequest('post', `/admin/dlq/${deadId}/requeue`);
    assert.deepEqual(requeued, { status: 200, body: { requeued: deadId } });
    assert.equal(t.store.getDead(deadId), undefined);
    assert.deepEqual(unhandled, []);
  });
});

const tightDisk = mountSmallDisk('16m');

describe('broker: a message dead-lettered while the disk is nearly full keeps its data', { skip: typeof tightDisk === 'string' ? tightDisk : false }, () => {
  const small = typeof tightDisk === 'string' ? null : tightDisk;
  let t: TestBroker;
  before(async () => {
    // The deadline comes after the sends that use up the store's room (a second or so).
    t = await startBroker({ dataDir: join(small!.dir, 'data'), delivery: { ack_timeout: 3, max_attempts: 1, max_stored_per_sender: 100_000 } });
  });
  after(async () => {
    try {
      await t.close();
    } finally {
      small!.unmount();
    }
  });

  test('room for the queue removal but not for the letter: neither is written until there is room for both, and the letter has the data', async () => {
    const big = 'y'.repeat(50_000);
    t.link.online(0, 'bob-1', 'bob');
    t.link.send(0, 'alice-1', 'alice', 'bob', big, { ref: 'big' });
    const stored = await t.link.answerTo('big');
    assert.ok(stored.op === 'senderAck');
    await t.link.next('deliverToUser', (c) => c.user === 'bob');
    // Leave 1 MiB (the store's margin) and 32 KiB free, then use up the space the store holds
    // past its file with 1 KB sends until one is refused: what is left is less than a 1 KB
    // send takes (13 KiB with LMDB's pages), room for a removal, not for a 50 KB letter.
    const filler = join(small!.dir, 'filler');
    const avail = (): number => Number(execFileSync('df', ['-B1', '--output=avail', small!.dir]).toString().trim().split('\n').pop());
    execFileSync('fallocate', ['-l', String(avail() - (1024 + 32) * 1024), filler]);
    for (let i = 0; t.store.health.writable; i++) {
      t.link.send(0, 'carl-1', 'carl', 'nobody', 'z'.repeat(1000), { ref: `fill${i}` });
      await t.link.answerTo(`fill${i}`);
    }
    const dead = t.broker.stats.dead_lettered;
    await until(() => (t.broker.stats.dead_lettered > dead ? true : undefined), 'the ack deadline: dead-lettered');
    await sleep(100);
    assert.equal(t.store.getDead(stored.id), undefined, 'the letter waits for room');
    rmSync(filler);
    await until(() => (t.store.getDead(stored.id) ? true : undefined), 'the letter written once there is room', 10_000);
    const letter = t.store.getDead(stored.id)!;
    assert.equal(letter.data, JSON.stringify(big));
    assert.doesNotMatch(letter.reason, /no longer in the store/);
  });
});

describe('broker: a store whose file is removed under the running server', () => {
  test('refuses send with E_STORE_UNAVAILABLE and says why, instead of acknowledging into a deleted file', async () => {
    const t = await startBroker();
    try {
      t.link.send(0, 'alice-1', 'alice', 'bob', 'before', { ref: 'before' });
      assert.equal((await t.link.answerTo('before')).op, 'senderAck');
      rmSync(t.dataDir, { recursive: true, force: true });
      // The store looks at its file with the free space, at most once a second.
      await sleep(1100);
      t.link.send(0, 'alice-1', 'alice', 'bob', 'after', { ref: 'after' });
      const refused = await t.link.answerTo('after');
      assert.equal(refused.op === 'error' && refused.code, 'E_STORE_UNAVAILABLE');
      assert.equal(t.store.health.writable, false);
      assert.match(String(t.store.health.lastError), /data\.mdb was removed while the server ran: restart it/);
      await sleep(1200);
      assert.equal(t.store.health.writable, false, 'the recovery probe does not take the removed file for a store again');
    } finally {
      await t.close();
    }
  });
});

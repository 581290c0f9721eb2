/**
 * The store's lease (src/store/leases.ts) and the ownership built on it
 * (src/broker/ownership.ts): which process delivers what is stored, when two share one store. Real LMDB in a temp directory; another process is a real child process; the
 * rules about processes that cannot be looked up read a fake /proc tree.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Ownership, type OwnershipEvents } from '../src/broker/ownership.js';
import { judge, processAlive, processIdentity, type LeaseRecord, type ProcessIdentity } from '../src/store/leases.js';
import { MessageStore } from '../src/store/store.js';
import { createLogger } from '../src/util/logger.js';
import { until } from './helpers/messaging.js';
import { tempDataDir } from './helpers/server.js';

const STORE_MODULE = fileURLToPath(new URL('../src/store/store.js', import.meta.url));

describe('the store lease', () => {
  const dirs: string[] = [];
  after(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  test('one holder at a time: the second process waits until the first releases it', async () => {
    const dir = tempDataDir();
    dirs.push(dir);
    const store = await MessageStore.open(dir, 'full');
    try {
      const first = store.lease('first-run', 15_000);
      const second = store.lease('second-run', 15_000);
      assert.deepEqual(await first.acquire(), { state: 'free', previous: undefined, why: 'never held' });
      assert.equal(first.read().state, 'mine');
      const refused = await second.acquire();
      assert.equal(refused.state, 'held');
      assert.equal(refused.state === 'held' && refused.record.holder, 'first-run');
      assert.equal((await first.acquire()).state, 'mine', 'acquire again renews');
      await second.release(); // not its lease: nothing changes
      assert.equal(second.read().state, 'held');
      await first.release();
      const taken = await second.acquire();
      assert.equal(taken.state, 'free');
      assert.equal(taken.state === 'free' && taken.why, 'released');
      assert.equal(first.read().state, 'held', 'now the first one waits');
    } finally {
      await store.close();
    }
  });

  test('a holder killed with SIGKILL frees the lease at once: its process is gone', async () => {
    const dir = tempDataDir();
    dirs.push(dir);
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const { MessageStore } = await import(${JSON.stringify(STORE_MODULE)});
         const store = await MessageStore.open(${JSON.stringify(dir)}, 'full');
         await store.lease('child-run', 15000).acquire();
         console.log('held');
         setInterval(() => {}, 1000);`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('held') && resolve());
      child.once('exit', (code) => reject(new Error(`child exited ${code}`)));
    });
    const store = await MessageStore.open(dir, 'full');
    try {
      const lease = store.lease('parent-run', 15_000);
      const held = lease.read();
      assert.equal(held.state, 'held');
      assert.equal(held.state === 'held' && held.record.pid, child.pid);
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
      const taken = await lease.acquire();
      assert.equal(taken.state, 'free');
      assert.equal(taken.state === 'free' && taken.why, 'its process has exited');
    } finally {
      await store.close();
    }
  });

  describe('judged from /proc', () => {
    const proc = mkdtempSync(join(tmpdir(), 'ocs-fake-proc-'));
    after(() => rmSync(proc, { recursive: true, force: true }));
    const self: ProcessIdentity = { pid: 100, boot: 'boot-1', pidNs: 'pid:[1]', startTime: '5000' };
    /** A fake /proc/PID/stat, the command name with a space and parentheses as real ones may have. */
    const fakeProcess = (pid: number, state: string, startTime: string): void => {
      mkdirSync(join(proc, String(pid)), { recursive: true });
      const after = [state, '1', ...Array.from({ length: 17 }, (_, i) => String(i)), startTime, '0'];
      writeFileSync(join(proc, String(pid), 'stat'), `${pid} (node (ocs) x) ${after.join(' ')}\n`);
    };
    const record = (fields: Partial<LeaseRecord>): LeaseRecord => ({
      holder: 'other-run',
      pid: 200,
      boot: 'boot-1',
      pidNs: 'pid:[1]',
      startTime: '7000',
      acquiredAt: 0,
      renewedAt: 1_000_000,
      ttlMs: 15_000,
      released: false,
      ...fields,
    });
    const now = 1_000_000 + 1000;

    test('a live holder on this host keeps it however late it renews (a long pause is not a death)', () => {
      fakeProcess(200, 'S', '7000');
      assert.equal(judge(record({ renewedAt: 0 }), 'me', self, now, proc).state, 'held');
    });

    test('a pid reused by another process, a zombie, or no process at all: free', () => {
      fakeProcess(201, 'S', '9999');
      fakeProcess(202, 'Z', '7000');
      for (const pid of [201, 202, 203]) {
        const state = judge(record({ pid }), 'me', self, now, proc);
        assert.deepEqual([state.state, state.state === 'free' && state.why], ['free', 'its process has exited'], `pid ${pid}`);
      }
      assert.equal(processAlive(201, '7000', proc), false);
    });

    test('a holder from before a reboot is gone; one released, or ours, says so', () => {
      assert.equal(judge(record({ boot: 'boot-0' }), 'me', self, now, proc).state, 'free');
      assert.equal(judge(record({ released: true }), 'me', self, now, proc).state, 'free');
      assert.equal(judge(record({ holder: 'me' }), 'me', self, now, proc).state, 'mine');
      assert.equal(judge(undefined, 'me', self, now, proc).state, 'free');
    });

    test('a holder this process cannot look up (another PID namespace, or no /proc) holds it while it renews', () => {
      const elsewhere = record({ pidNs: 'pid:[2]', pid: 203 });
      assert.equal(judge(elsewhere, 'me', self, now, proc).state, 'held');
      const stale = judge(elsewhere, 'me', self, elsewhere.renewedAt + 15_001, proc);
      assert.deepEqual([stale.state, stale.state === 'free' && stale.why], ['free', 'not renewed for 15000 ms']);
      const noProc: ProcessIdentity = { pid: 100, boot: null, pidNs: null, startTime: null };
      assert.equal(judge(record({ pid: 200 }), 'me', noProc, now, proc).state, 'held');
      assert.equal(judge(record({ pid: 200 }), 'me', noProc, now + 15_000, proc).state, 'free');
    });

    test('a record that is not a lease (another version, damage) counts as free, so that the next acquire overwrites it', () => {
      for (const junk of [{}, 'lease', null, { holder: 7 }, { ...record({}), renewedAt: '__proto__' }, { ...record({ pidNs: 'pid:[2]' }), ttlMs: null }]) {
        const state = judge(junk as unknown as LeaseRecord, 'me', self, now, proc);
        assert.deepEqual([state.state, state.state === 'free' && state.why], ['free', 'not a lease record'], JSON.stringify(junk));
      }
    });

    test("this process's identity is read from the real /proc on Linux", () => {
      const me = processIdentity();
      assert.equal(me.pid, process.pid);
      if (process.platform !== 'linux') return;
      assert.match(String(me.boot), /^[0-9a-f-]{36}$/);
      assert.match(String(me.pidNs), /^pid:\[\d+\]$/);
      assert.ok(processAlive(process.pid, me.startTime!));
    });
  });
});

describe('ownership of the stored queues (src/broker/ownership.ts)', () => {
  const log = createLogger('silent');

  test('a process standing by takes the queues within a poll of their release', async () => {
    const dir = tempDataDir();
    const store = await MessageStore.open(dir, 'full');
    const taken: string[] = [];
    const events = (name: string): OwnershipEvents => ({ acquired: (_previous, why) => taken.push(`${name}: ${why}`), lost: () => taken.push(`${name}: lost`), adopt: async () => true });
    const holder = new Ownership(store.lease('holder-run', 15_000), log, events('holder'));
    const waiting = new Ownership(store.lease('waiting-run', 15_000), log, events('waiting'));
    try {
      assert.equal(await holder.start(), true);
      assert.equal(await waiting.start(), false);
      assert.equal(waiting.owns, false);
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.deepEqual(taken, ['holder: never held'], 'still held: the one waiting keeps waiting');
      const released = Date.now();
      await holder.release();
      await until(() => (waiting.owns ? true : undefined), 'the take-over', 2000);
      assert.ok(Date.now() - released < 1000);
      assert.deepEqual(taken, ['holder: never held', 'waiting: released']);
    } finally {
      waiting.stop();
      holder.stop();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the holder loads what processes that stood by stored once they are gone, not while one still stands by', async () => {
    const dir = tempDataDir();
    const store = await MessageStore.open(dir, 'full');
    const adopted: string[][] = [];
    const events: OwnershipEvents = { acquired: () => {}, lost: () => {}, adopt: async (gone) => (adopted.push(gone.map((g) => g.holder).sort()), true) };
    const holder = new Ownership(store.lease('holder-run', 15_000), log, events);
    const first = new Ownership(store.lease('first-standby', 15_000), log, events);
    const second = new Ownership(store.lease('second-standby', 15_000), log, events);
    const lease = store.lease('observer', 15_000);
    try {
      assert.equal(await holder.start(), true);
      assert.equal(await first.start(), false);
      assert.equal(await second.start(), false);
      assert.deepEqual(lease.standbys().map((s) => [s.record.holder, s.gone]).sort(), [['first-standby', false], ['second-standby', false]]);
      await first.release();
      // A renewal (every 3 s) comes and goes: the second still stands by, its messages beside the first's.
      await new Promise((resolve) => setTimeout(resolve, 3500));
      assert.deepEqual(adopted, []);
      await second.release();
      await until(() => (adopted.length > 0 ? true : undefined), 'the adoption', 5000);
      assert.deepEqual(adopted, [['first-standby', 'second-standby']]);
      await until(() => (lease.standbys().length === 0 ? true : undefined), 'the records forgotten', 2000);
    } finally {
      for (const o of [holder, first, second]) o.stop();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a holder that finds its lease taken says so (possible only where it cannot be looked up and did not renew in time)', async () => {
    const dir = tempDataDir();
    const store = await MessageStore.open(dir, 'full');
    let lost: LeaseRecord | null = null;
    const holder = new Ownership(store.lease('slow-run', 100), log, { acquired: () => {}, lost: (record) => (lost = record), adopt: async () => true });
    try {
      assert.equal(await holder.start(), true);
      // A process in another PID namespace (a container on the same volume) sees only the renewals.
      const elsewhere = store.lease('container-run', 15_000, { pid: 1, boot: processIdentity().boot, pidNs: 'pid:[elsewhere]', startTime: '1' });
      await new Promise((resolve) => setTimeout(resolve, 150));
      assert.equal((await elsewhere.acquire()).state, 'free', 'not renewed for 100 ms');
      await until(() => lost ?? undefined, 'the holder to notice', 10_000);
      assert.equal(lost!.holder, 'container-run');
      assert.equal(holder.owns, false);
    } finally {
      holder.stop();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { getJson, member, type Frame, type TestClient } from './helpers/client.js';
import { settle, until } from './helpers/messaging.js';
import { startProcess, testConfig, type ServerProcess } from './helpers/server.js';
import { mountSmallDisk } from './helpers/small-disk.js';

const disk = mountSmallDisk('2m');
const DATA = 'x'.repeat(10 * 1024);

describe('a full disk, for real: the server refuses sends with E_STORE_UNAVAILABLE, keeps serving pub, and recovers', { skip: typeof disk === 'string' ? disk : false }, () => {
  const small = typeof disk === 'string' ? null : disk;
  let server: ServerProcess;
  let sender: TestClient;
  let refs = 0;

  before(async () => {
    server = await startProcess(testConfig({ store: { data_dir: join(small!.dir, 'data') }, websocket: { delivery: { max_stored_per_sender: 100_000 } } }));
    sender = await member(server.port, 'amy');
  });
  after(async () => {
    sender?.close();
    try {
      if (server) assert.equal(await server.stop(), 0, `a clean exit after all that; stderr: ${server.stderr().slice(-2000)}`);
    } finally {
      small!.unmount();
    }
  });

  /** `count` sends of 10 KB, to offline users unless `to` is given; every one's answer (ack or err), matched by ref. */
  async function sendMany(count: number, to?: string): Promise<Frame[]> {
    const sent: string[] = [];
    for (let i = 0; i < count; i++) {
      const ref = `r${++refs}`;
      sender.send({ op: 'send', to: to ?? `nobody-${refs}`, data: DATA, ref });
      sent.push(ref);
    }
    return Promise.all(sent.map((ref) => sender.next((f) => (f.op === 'ack' || f.op === 'err') && f.ref === ref, 10_000)));
  }

  const storeLogs = (): string[] => server.logs.map((l) => String(l.msg)).filter((m) => m.startsWith('store '));

  test('filling the disk: every send gets its ack or E_STORE_UNAVAILABLE, never silence; the process stays up', async () => {
    // Half of them to an online recipient (which does not ack, so they stay stored): messages go
    // out while their commits run, but a write the store refuses never does.
    const keeper = await member(server.port, 'keeper');
    const acked = new Set<unknown>();
    let refused = 0;
    for (let round = 0; round < 40 && refused === 0; round++) {
      for (const answer of await sendMany(20, round % 2 === 0 ? 'keeper' : undefined)) {
        if (answer.op === 'ack') {
          acked.add(answer.id);
          continue;
        }
        assert.equal(answer.code, 'E_STORE_UNAVAILABLE', String(answer.message));
        refused++;
      }
    }
    assert.ok(refused > 0, 'the 2 MiB disk filled up');
    await settle(keeper);
    const got = keeper.frames.flatMap((f) => (f.op === 'batch' ? (f.msgs as Frame[]) : f.op === 'msg' ? [f] : []));
    assert.ok(got.length > 0);
    assert.deepEqual(got.filter((m) => !acked.has(m.id)), [], 'the recipient got only messages whose senders were acknowledged');
    keeper.close();
    const [next] = await sendMany(1);
    assert.equal(next!.code, 'E_STORE_UNAVAILABLE');
    assert.match(String(next!.message), /the store cannot write .*send and any are refused until it recovers/);
    assert.ok(!String(next!.message).includes(small!.dir), 'the client is not told where the store lives');
    assert.equal(server.child.exitCode, null, 'still running');
  });

  test('/health says degraded, with the store section, from every shard', async () => {
    for (let i = 0; i < 4; i++) {
      const { status, body } = await getJson(server.port, '/health');
      assert.equal(status, 200);
      assert.equal(body.status, 'degraded');
      const store = body.store as { writable: boolean; lastError: string | null; failedWrites: number };
      assert.equal(store.writable, false);
      assert.match(String(store.lastError), /.+/);
      assert.ok(store.failedWrites > 0);
    }
  });

  test('pub is not affected', async () => {
    const listener = await member(server.port, 'lee', ['room']);
    const publisher = await member(server.port, 'pam', ['room']);
    publisher.send({ op: 'pub', group: 'room', data: 'still here', ref: 'p' });
    assert.equal((await publisher.next((f) => f.ref === 'p')).op, 'ack');
    const msg = await listener.next((f) => f.op === 'msg');
    assert.equal(msg.data, 'still here');
    await settle(listener);
    listener.close();
    publisher.close();
  });

  test('the change is logged once, with its code; nothing reached the last-resort handler', () => {
    const down = server.logs.filter((l) => l.msg === 'store cannot write: send and any refused until it recovers (pub is not affected)');
    assert.equal(down.length, 1, storeLogs().join('\n'));
    assert.equal(down[0]!.code, 'E_STORE_UNAVAILABLE');
    assert.equal(server.logs.filter((l) => String(l.msg).startsWith('unexpected error caught')).length, 0);
  });

  test('once space returns, sends are accepted again and /health is ok', async () => {
    small!.grow('64m');
    await until(async () => ((await getJson(server.port, '/health')).body.status === 'ok' ? true : undefined), '/health ok', 10_000);
    const store = (await getJson(server.port, '/health')).body.store as Record<string, unknown>;
    assert.equal(store.writable, true);
    assert.equal(store.lastError, null);
    for (const answer of await sendMany(5)) assert.equal(answer.op, 'ack', JSON.stringify(answer));
    assert.deepEqual(storeLogs(), ['store cannot write: send and any refused until it recovers (pub is not affected)', 'store writable again: send and any accepted']);
  });
});

const filled = mountSmallDisk('96m');
const SMALL_DATA = 'y'.repeat(4 * 1024);

describe('a disk another process fills while sends flow: LMDB never meets it full (its failed page write would abort the process)', { skip: typeof filled === 'string' ? filled : false }, () => {
  const small = typeof filled === 'string' ? null : filled;
  let server: ServerProcess;

  before(async () => {
    server = await startProcess(testConfig({ store: { data_dir: join(small!.dir, 'data') }, websocket: { delivery: { max_stored_per_sender: 1_000_000 } } }));
  });
  after(async () => {
    try {
      if (server) assert.equal(await server.stop(), 0, `a clean exit; stderr: ${server.stderr().slice(-2000)}`);
    } finally {
      small!.unmount();
    }
  });

  test('four fills of 0.7 s at 450 sends a second: every send is acknowledged (written into the space the store holds), no LMDB commit fails, the process stays up', async () => {
    const sender = await member(server.port, 'amy');
    let sent = 0;
    let flowing = true;
    const flow = (async () => {
      while (flowing) {
        for (let i = 0; i < 45; i++) sender.send({ op: 'send', to: `nobody-${sent}`, data: SMALL_DATA, ref: `f${sent++}` });
        await sleep(100);
      }
    })();
    const fill = join(small!.dir, 'fill');
    await sleep(1500); // the store's reserve grows to a few seconds of these writes
    for (let cycle = 0; cycle < 4; cycle++) {
      await sleep(cycle * 200);
      spawnSync('dd', ['if=/dev/zero', `of=${fill}`, 'bs=64k'], { stdio: 'ignore' });
      assert.equal(statfsSync(small!.dir).bavail, 0, 'the disk is full');
      await sleep(700);
      rmSync(fill);
      await sleep(1500);
    }
    flowing = false;
    await flow;
    const answers = await Promise.all(Array.from({ length: sent }, (_, i) => sender.next((f) => (f.op === 'ack' || f.op === 'err') && f.ref === `f${i}`, 10_000)));
    assert.deepEqual(answers.filter((a) => a.op !== 'ack'), []);
    assert.equal((await getJson(server.port, '/health')).body.status, 'ok');
    assert.deepEqual(server.logs.filter((l) => String(l.msg).startsWith('store ')), [], 'the store never failed a write, nor refused one');
    assert.equal(server.child.exitCode, null, 'still running');
    sender.close();
  });
});

const held = mountSmallDisk('24m');

describe('a restart on a disk whose free space the last run holds past data.mdb', { skip: typeof held === 'string' ? held : false }, () => {
  const small = typeof held === 'string' ? null : held;
  after(() => small!.unmount());

  test('the new run writes into it: its sends are acknowledged and /health is ok', async () => {
    const config = testConfig({ store: { data_dir: join(small!.dir, 'data') }, websocket: { delivery: { max_stored_per_sender: 100_000 } } });
    const first = await startProcess(config);
    const amy = await member(first.port, 'amy');
    // 60 KB sends for 1.5 s: the reserve grows to four seconds of them, as far as the disk has room.
    const big = 'x'.repeat(60_000);
    for (let round = 0, start = Date.now(); Date.now() - start < 1500; round++) {
      for (let i = 0; i < 4; i++) amy.send({ op: 'send', to: `nobody-${round}-${i}`, data: big, ref: `a${round}-${i}` });
      const answer = await amy.next((f) => f.ref === `a${round}-3`, 10_000);
      if (answer.op !== 'ack') break;
      await sleep(20);
    }
    amy.close();
    assert.equal(await first.stop(), 0);
    const freeNow = (): number => statfsSync(small!.dir).bavail * statfsSync(small!.dir).bsize;
    // Another process takes what the reserve left above the store's 1 MiB margin.
    if (freeNow() > 1024 * 1024 + 4096) spawnSync('fallocate', ['-l', String(freeNow() - 1024 * 1024), join(small!.dir, 'filler')]);
    const free = freeNow();
    assert.ok(free <= 1024 * 1024 + 4096, `${free} bytes free`);

    const second = await startProcess(config);
    try {
      const bob = await member(second.port, 'bob');
      // 40 of 10 KB: more than the free space would take (each send takes room for LMDB's pages too).
      for (let i = 0; i < 40; i++) {
        bob.send({ op: 'send', to: 'nobody', data: DATA, ref: `b${i}` });
        assert.equal((await bob.next((f) => f.ref === `b${i}`)).op, 'ack', `send ${i} (${free} bytes were free)`);
      }
      assert.equal((await getJson(second.port, '/health')).body.status, 'ok');
      bob.close();
    } finally {
      assert.equal(await second.stop(), 0, second.stderr().slice(-2000));
    }
  });
});

const cjk = mountSmallDisk('24m');

describe('persisted group history on a disk another process fills', { skip: typeof cjk === 'string' ? cjk : false }, () => {
  const small = typeof cjk === 'string' ? null : cjk;
  after(() => small!.unmount());

  test('pubs of multi-byte text take room for their UTF-8 bytes: LMDB never writes past it (no commit fails)', async () => {
    const server = await startProcess(
      testConfig({
        store: { data_dir: join(small!.dir, 'data') },
        websocket: { server: { max_payload: 1024 * 1024 }, performance: { ring_bytes: 8 * 1024 * 1024 }, history: [{ pattern: 'room*', size: 1000, ttl: 0 }] },
        history: { persist: true },
      }),
    );
    try {
      const pam = await member(server.port, 'pam', ['room1']);
      pam.send({ op: 'pub', group: 'room1', data: 'warm', ref: 'w' });
      await pam.next((f) => f.ref === 'w');
      await sleep(1500);
      spawnSync('dd', ['if=/dev/zero', `of=${join(small!.dir, 'fill')}`, 'bs=64k'], { stdio: 'ignore' });
      // 900 KB each in UTF-8, 300,000 characters: two taken before either commits.
      const data = '漢'.repeat(300_000);
      for (let i = 0; i < 2; i++) pam.send({ op: 'pub', group: 'room1', data, ref: `p${i}` });
      for (let i = 0; i < 2; i++) await pam.next((f) => f.ref === `p${i}`, 10_000);
      await sleep(500);
      assert.doesNotMatch(server.stderr(), /Commit failed|Write error|Input\/output error/);
      assert.doesNotMatch(String(((await getJson(server.port, '/health')).body.store as { lastError: unknown }).lastError), /Commit failed/);
      rmSync(join(small!.dir, 'fill'));
      pam.close();
    } finally {
      assert.equal(await server.stop(), 0, server.stderr().slice(-2000));
    }
  });
});

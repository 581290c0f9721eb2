/**
 * A `send` for an online recipient is delivered while its store commit runs; the sender's `ack`
 * still waits for the commit. The commits are slowed for real: a worker of this test process
 * opens the server's LMDB environment and holds its write lock (test/fixtures/store-lock-holder.ts),
 * so every commit the server tries meanwhile waits, as behind a slow fsync.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { after, before, describe, test } from 'node:test';
import { getJson, member, type Frame, type TestClient } from './helpers/client.js';
import { adminJson, nextMsgs, settle, until } from './helpers/messaging.js';
import { startProcess, tempDataDir, testConfig, type ServerProcess } from './helpers/server.js';

const HOLDER = fileURLToPath(new URL('./fixtures/store-lock-holder.js', import.meta.url));
/** Long enough for a delivery and an ack on a busy machine (test processes get only idle CPU). */
const HOLD_MS = 3000;

/** Holds the store's write lock for `holdMs`: resolves once held, with when (Date.now()) it is released. */
async function holdStoreLock(dir: string, holdMs = HOLD_MS): Promise<{ released: Promise<number>; held(): boolean }> {
  const worker = new Worker(HOLDER, { workerData: { dir, holdMs } });
  let onReleased: (at: number) => void = () => {};
  let releasedAt = 0;
  const released = new Promise<number>((resolve) => (onReleased = (at) => resolve((releasedAt = at))));
  await new Promise<void>((resolve, reject) => {
    worker.on('message', (m) => {
      if (m === 'locked') resolve();
      if (m === 'released') onReleased(Date.now());
    });
    worker.once('error', reject);
  });
  return { released, held: () => releasedAt === 0 };
}

/** When (Date.now()) the next frame matching `match` arrives at `client`. */
async function arrival(client: TestClient, match: (f: Frame) => boolean, timeoutMs = 10_000): Promise<{ frame: Frame; at: number }> {
  const frame = await client.next(match, timeoutMs);
  return { frame, at: Date.now() };
}

const isMsg = (f: Frame): boolean => f.op === 'msg' || f.op === 'batch';
const stored = async (port: number): Promise<number> => ((await getJson(port, '/stats')).body.messaging as { stored: number }).stored;

describe('a send reaches its online recipient while its commit runs; the sender is acknowledged after the commit', () => {
  const dataDir = tempDataDir();
  const config = testConfig({ store: { data_dir: dataDir }, websocket: { delivery: { ack_timeout: 30 } } });
  let server: ServerProcess;

  before(async () => {
    server = await startProcess(config);
  });
  after(async () => {
    if (server) assert.equal(await server.stop(), 0, server.stderr());
  });

  test('delivered before the commit ends, acknowledged to the sender only after it', async () => {
    const rcpt = await member(server.port, 'ria');
    const sender = await member(server.port, 'sol');
    const lock = await holdStoreLock(dataDir);
    sender.send({ op: 'send', to: 'ria', data: 'fast', ref: 's1' });
    const delivered = await arrival(rcpt, isMsg, HOLD_MS * 4);
    assert.ok(lock.held(), 'the recipient had it while the store was still locked');
    const ack = await arrival(sender, (f) => f.op === 'ack' && f.ref === 's1', HOLD_MS * 4);
    const releasedAt = await lock.released;
    assert.equal(delivered.frame.data, 'fast');
    assert.equal(delivered.frame.ackReq, true);
    assert.ok(delivered.at < releasedAt);
    assert.ok(ack.at >= releasedAt, "the sender's ack waited for the commit");
    assert.equal(ack.frame.id, delivered.frame.id);
    rcpt.send({ op: 'ack', id: delivered.frame.id });
    await until(async () => ((await stored(server.port)) === 0 ? true : undefined), 'the acknowledged message to leave the broker');
    rcpt.close();
    sender.close();
  });

  test("an ack that arrives before the message's commit removes it for good: a restart does not bring it back", async () => {
    const rcpt = await member(server.port, 'rob');
    const sender = await member(server.port, 'sue');
    const lock = await holdStoreLock(dataDir);
    for (let i = 0; i < 5; i++) sender.send({ op: 'send', to: 'rob', data: i, ref: `a${i}` });
    const msgs = await nextMsgs(rcpt, 5, HOLD_MS * 4);
    for (const m of msgs) rcpt.send({ op: 'ack', id: m.id });
    await settle(rcpt);
    await new Promise((resolve) => setTimeout(resolve, 100)); // the acks reach the broker (its loop is free: only the store's writer waits)
    assert.ok(lock.held(), 'the acks came while the commit was still waiting');
    assert.equal(sender.frames.filter((f) => f.op === 'ack').length, 0, 'no sender ack before the commit');
    await lock.released;
    for (let i = 0; i < 5; i++) await sender.next((f) => f.op === 'ack' && f.ref === `a${i}`);
    await until(async () => ((await stored(server.port)) === 0 ? true : undefined), 'the broker to hold nothing');
    rcpt.close();
    sender.close();
    // The removals were written after the puts (lmdb-js commits in call order): nothing comes back.
    assert.equal(await server.stop(), 0, server.stderr());
    server = await startProcess(config);
    const again = await member(server.port, 'rob');
    assert.equal(again.welcome.pending, 0, 'the messages acknowledged before their commit stay acknowledged');
    again.close();
  });

  test('a second connection opened before the commit gets the message too, its data kept in memory until the commit', async () => {
    const first = await member(server.port, 'tom');
    const sender = await member(server.port, 'uli');
    const lock = await holdStoreLock(dataDir);
    sender.send({ op: 'send', to: 'tom', data: { text: 'both' }, ref: 'b' });
    const [m1] = await nextMsgs(first, 1, HOLD_MS * 4);
    const second = await member(server.port, 'tom');
    const [m2] = await nextMsgs(second, 1, HOLD_MS * 4);
    assert.ok(lock.held(), 'both deliveries came before the commit');
    assert.equal(second.welcome.pending, 1);
    assert.deepEqual(m2!.data, { text: 'both' });
    assert.equal(m2!.id, m1!.id);
    await lock.released;
    await sender.next((f) => f.op === 'ack' && f.ref === 'b');
    second.send({ op: 'ack', id: m2!.id });
    await until(async () => ((await stored(server.port)) === 0 ? true : undefined), 'the acknowledged message to leave the broker');
    for (const c of [first, second, sender]) c.close();
  });

  test('a scheduled send is not delivered early, and an offline recipient gets the message on connecting, as before', async () => {
    const rcpt = await member(server.port, 'val');
    const sender = await member(server.port, 'wes');
    const at = Date.now() + 600;
    sender.send({ op: 'send', to: 'val', data: 'later', at, ref: 'later' });
    sender.send({ op: 'send', to: 'nobody-yet', data: 'waits', ref: 'w' });
    await sender.next((f) => f.op === 'ack' && f.ref === 'later');
    await sender.next((f) => f.op === 'ack' && f.ref === 'w');
    const [m] = await nextMsgs(rcpt, 1, 5000);
    assert.ok(Date.now() >= at, 'not before `at`');
    assert.equal(m!.data, 'later');
    rcpt.send({ op: 'ack', id: m!.id });
    const late = await member(server.port, 'nobody-yet');
    assert.equal(late.welcome.pending, 1);
    const [w] = await nextMsgs(late, 1);
    assert.equal(w!.data, 'waits');
    late.send({ op: 'ack', id: w!.id });
    await until(async () => ((await stored(server.port)) === 0 ? true : undefined), 'nothing left');
    for (const c of [rcpt, sender, late]) c.close();
  });
});

describe('an ack deadline that passes before a slow commit', () => {
  const dataDir = tempDataDir();
  let server: ServerProcess;
  before(async () => {
    server = await startProcess(testConfig({ store: { data_dir: dataDir }, websocket: { delivery: { ack_timeout: 0.1, max_attempts: 1 } } }));
  });
  after(async () => {
    if (server) assert.equal(await server.stop(), 0, server.stderr());
  });

  test('dead-letters the message once it is stored, with its data', async () => {
    const rcpt = await member(server.port, 'xia');
    const sender = await member(server.port, 'yan');
    const lock = await holdStoreLock(dataDir);
    sender.send({ op: 'send', to: 'xia', data: { keep: 'me' }, ref: 'd' });
    const [m] = await nextMsgs(rcpt, 1, HOLD_MS * 4); // not acknowledged: its 100 ms deadline passes during the commit
    assert.ok(lock.held(), 'delivered before the commit');
    await lock.released;
    const ack = await sender.next((f) => f.op === 'ack' && f.ref === 'd');
    assert.equal(ack.id, m!.id);
    const letter = await until(async () => {
      const { status, body } = await adminJson(server.port, 'GET', `/admin/dlq/${m!.id}`);
      return status === 200 ? body : undefined;
    }, 'the dead letter');
    assert.deepEqual(letter.data, { keep: 'me' }, 'the letter has the data the commit stored');
    assert.match(String(letter.reason), /not acknowledged after 1 deliveries/);
    assert.equal(await stored(server.port), 0);
    rcpt.close();
    sender.close();
  });
});

describe('with delivery.before_commit false, a send waits for its commit and leaves with its ack', () => {
  const dataDir = tempDataDir();
  let server: ServerProcess;
  before(async () => {
    server = await startProcess(testConfig({ store: { data_dir: dataDir }, websocket: { delivery: { ack_timeout: 30, before_commit: false } } }));
  });
  after(async () => {
    if (server) assert.equal(await server.stop(), 0, server.stderr());
  });

  test('the recipient gets it only after the commit, as the sender gets its ack', async () => {
    const rcpt = await member(server.port, 'zed');
    const sender = await member(server.port, 'zoe');
    const lock = await holdStoreLock(dataDir);
    sender.send({ op: 'send', to: 'zed', data: 'after', ref: 'c' });
    const delivered = await arrival(rcpt, isMsg, HOLD_MS * 4);
    const releasedAt = await lock.released;
    assert.ok(delivered.at >= releasedAt, 'delivered only once the store could commit');
    assert.equal(delivered.frame.data, 'after');
    const ack = await sender.next((f) => f.op === 'ack' && f.ref === 'c');
    assert.equal(ack.id, delivered.frame.id);
    rcpt.send({ op: 'ack', id: delivered.frame.id });
    await until(async () => ((await stored(server.port)) === 0 ? true : undefined), 'the acknowledged message to leave the broker');
    rcpt.close();
    sender.close();
  });
});

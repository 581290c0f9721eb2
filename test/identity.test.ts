/**
 * A connection's identity (issue 8, points 2 and 6): set exactly once, frames that arrive
 * before it is known (and before the welcome) wait for it in order, `welcome` is always the
 * first frame, a token's expiry closes the connection, and an `auth` frame with a fresh token
 * of the same user extends it. Pipelined frames are sent in one TCP write (test/helpers/raw-ws).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { connect, type TestClient } from './helpers/client.js';
import { connectRaw } from './helpers/raw-ws.js';
import { startInProcess } from './helpers/server.js';
import { signToken } from './helpers/tokens.js';
import type { RunningServer } from '../src/index.js';

const SECRET = 'identity-test-secret-of-reasonable-length';

/** A token for `sub` expiring in `expiresInS` seconds. */
function token(sub: string, expiresInS = 3600): Promise<string> {
  return signToken({}, { sub, exp: Math.floor(Date.now() / 1000) + expiresInS, secret: SECRET });
}

async function user(port: number, sub: string): Promise<TestClient> {
  const client = await connect(port, { query: `token=${await token(sub)}` });
  await client.next((f) => f.op === 'welcome');
  return client;
}

describe('a connection is one user, set once', () => {
  let server: RunningServer;
  before(async () => {
    // One shard: the bystander shares it with the misbehaving connection.
    server = await startInProcess({ websocket: { server: { shards: 1 }, auth: { secret: SECRET, allow_anonymous: false } } });
  });
  after(() => server.close());

  test('two auth frames in one write: the first user is welcomed, the second refused with 4001, and the first user\'s messages wait for them', async () => {
    const bystander = await user(server.port, 'bystander');
    const raw = await connectRaw(server.port, { onOpen: [{ op: 'auth', token: await token('alice') }, { op: 'auth', token: await token('mallory') }] });
    assert.equal((await raw.next()).user, 'alice', 'the first frame is the welcome of the first user');
    const err = await raw.next();
    assert.equal(err.op, 'err');
    assert.equal(err.code, 'E_UNAUTHORIZED');
    assert.equal((await raw.closed).code, 4001);
    assert.deepEqual(raw.frames, [], 'no second welcome');
    // Alice is offline now: a send to her waits in her queue (it once crashed the shard).
    bystander.send({ op: 'send', to: 'alice', data: 'for alice', ref: 's1' });
    assert.equal((await bystander.next((f) => f.ref === 's1')).op, 'ack');
    bystander.send({ op: 'ping', t: 1 });
    await bystander.next((f) => f.op === 'pong');
    const alice = await connect(server.port, { query: `token=${await token('alice')}` });
    const welcome = await alice.next((f) => f.op === 'welcome');
    assert.equal(welcome.pending, 1, 'stored, not dead-lettered');
    const delivered = await alice.next((f) => f.op === 'msg' || f.op === 'batch');
    assert.equal(delivered.op === 'batch' ? (delivered.msgs as Array<{ data: unknown }>)[0]!.data : delivered.data, 'for alice');
    for (const client of [alice, bystander]) client.close();
  });

  test('an auth frame and the frames right behind it are handled in order, after the welcome', async () => {
    const raw = await connectRaw(server.port, {
      onOpen: [
        { op: 'auth', token: await token('carol') },
        { op: 'join', group: 'g', ref: 'j' },
        { op: 'pub', group: 'g', data: 'hello', ref: 'p' },
        { op: 'ping', t: 7 },
      ],
    });
    const ops: string[] = [];
    for (let i = 0; i < 5; i++) ops.push((await raw.next()).op);
    assert.deepEqual(ops, ['welcome', 'joined', 'msg', 'ack', 'pong']);
    raw.close();
    await raw.closed;
  });

  test('frames sent the moment a ?token= connection opens are answered after its welcome', async () => {
    // The broker that sends the welcome runs in this thread: while it is held still (the
    // client runs in a worker), the shard has every chance to answer the ping first.
    const signal = new SharedArrayBuffer(4);
    const worker = new Worker(new URL('./fixtures/early-frames-client.js', import.meta.url), {
      workerData: { port: server.port, query: `token=${await token('dave')}`, frames: [{ op: 'ping', t: 1 }], settleMs: 300, count: 2, signal },
    });
    const result = new Promise<{ ops?: string[]; error?: string }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    Atomics.wait(new Int32Array(signal), 0, 0, 10_000);
    const { ops, error } = await result;
    assert.equal(error, undefined);
    assert.deepEqual(ops, ['welcome', 'pong']);
  });

  test('frames waiting for the identity are bounded: past the cap, E_RATE_LIMITED and close 4029', async () => {
    const pings = Array.from({ length: 100 }, (_, t) => ({ op: 'ping', t }));
    const raw = await connectRaw(server.port, { onOpen: [{ op: 'auth', token: await token('erin') }, ...pings] });
    assert.equal((await raw.closed).code, 4029);
    assert.ok(raw.frames.some((f) => f.op === 'err' && f.code === 'E_RATE_LIMITED'));
    assert.ok(!raw.frames.some((f) => f.op === 'pong'), 'nothing was answered before the welcome');
  });
});

describe('a token is checked for as long as the connection lives', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { server: { shards: 1 }, auth: { secret: SECRET, allow_anonymous: false, clock_tolerance: 0 } } });
  });
  after(() => server.close());

  test('a connection whose token expires gets E_UNAUTHORIZED and close 4001', async () => {
    const client = await connect(server.port, { query: `token=${await token('gina', 2)}` });
    await client.next((f) => f.op === 'welcome');
    const err = await client.next((f) => f.op === 'err', 5000);
    assert.equal(err.code, 'E_UNAUTHORIZED');
    assert.match(String(err.message), /expired/);
    assert.equal((await client.closed).code, 4001);
  });

  test('an auth frame with a fresh token of the same user extends the connection and is acknowledged', async () => {
    const client = await connect(server.port, { query: `token=${await token('hank', 2)}` });
    const welcome = await client.next((f) => f.op === 'welcome');
    assert.ok((welcome.expiresAt as number) <= Date.now() + 2000, 'the welcome says when the token runs out');
    client.send({ op: 'auth', token: await token('hank', 3600), ref: 'renew' });
    const ack = await client.next((f) => f.ref === 'renew');
    assert.equal(ack.op, 'ack');
    assert.ok((ack.expiresAt as number) > Date.now() + 3_000_000);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    client.send({ op: 'ping', t: 1 });
    await client.next((f) => f.op === 'pong');
    client.close();
  });

  test('max_lifetime: the same token sent again does not extend the connection; another token does', async () => {
    const capped = await startInProcess({ websocket: { server: { shards: 1 }, auth: { secret: SECRET, allow_anonymous: false, require_exp: false, max_lifetime: 2 } } });
    try {
      const first = await signToken({ n: 1 }, { sub: 'kim', exp: null, secret: SECRET });
      const resent = await connect(capped.port, { query: `token=${first}` });
      const renewed = await connect(capped.port, { query: `token=${first}` });
      const welcome = await resent.next((f) => f.op === 'welcome');
      await renewed.next((f) => f.op === 'welcome');
      await new Promise((resolve) => setTimeout(resolve, 1000));
      resent.send({ op: 'auth', token: first, ref: 'again' });
      const again = await resent.next((f) => f.ref === 'again');
      assert.equal(again.expiresAt, welcome.expiresAt, 'the same token: the same expiry');
      renewed.send({ op: 'auth', token: await signToken({ n: 2 }, { sub: 'kim', exp: null, secret: SECRET }), ref: 'fresh' });
      const fresh = await renewed.next((f) => f.ref === 'fresh');
      assert.ok((fresh.expiresAt as number) > (welcome.expiresAt as number) + 500, 'a new token: max_lifetime from now');
      assert.equal((await resent.closed).code, 4001, 'closed at the first token\'s max_lifetime');
      renewed.send({ op: 'ping', t: 1 });
      await renewed.next((f) => f.op === 'pong');
      renewed.close();
    } finally {
      await capped.close();
    }
  });

  test('an auth frame with another user\'s token is refused with 4001', async () => {
    const client = await user(server.port, 'ivan');
    client.send({ op: 'auth', token: await token('judy'), ref: 'switch' });
    const err = await client.next((f) => f.op === 'err');
    assert.equal(err.code, 'E_UNAUTHORIZED');
    assert.equal(err.ref, 'switch');
    assert.equal((await client.closed).code, 4001);
  });
});

/**
 * While a shard's ring to the message broker is backed up (the broker, in the primary thread,
 * is behind), what would queue more records for it is refused with E_OVERLOADED instead of
 * growing the shard's memory: acks, joins. A review flooded acks from 1,000 connections at the
 * default rate and grew a shard to 1.29 GB. Here the broker is this test's own thread (the
 * server runs in-process), held busy while one client's frames arrive; a small ring and
 * overflow make the backlog quick to reach.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RunningServer } from '../src/index.js';
import { Worker } from 'node:worker_threads';
import { ALLOWANCE } from '../src/shard/backpressure.js';
import { getJson, member, type Frame, type TestClient } from './helpers/client.js';
import { announceSkip, nodeConfig, startPrivateRedis } from './helpers/redis.js';
import { startInProcess } from './helpers/server.js';

/** Blocks this thread (the broker's) for `ms`. */
function holdBroker(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until);
}

/** One shard, no rate limit, an acknowledged message dead-lettered after one delivery. */
function startOneShard(ackTimeout: number, performance: Record<string, unknown> = {}): Promise<RunningServer> {
  return startInProcess({
    websocket: {
      server: { shards: 1, max_payload: 16_384 },
      limits: { messages_per_second: 0 },
      performance,
      delivery: { ack_timeout: ackTimeout, max_attempts: 1 },
    },
  });
}

describe('a shard whose link to the broker is backed up', () => {
  let server: RunningServer;
  before(async () => {
    // A small ring and overflow make the backlog quick to reach.
    server = await startOneShard(0.5, { ring_bytes: 65_536, ring_overflow_bytes: 16_384 });
  });
  after(() => server.close());

  test('refuses acks (with their id) and joins while it is, takes them again once the broker caught up, and a leave of a member is never refused', async () => {
    const client = await member(server.port, 'flooder', ['kept']);
    const id = 'x'.repeat(120);
    // About 180 bytes per ack record: the ring and its overflow hold some 450.
    for (let i = 0; i < 3000; i++) client.send({ op: 'ack', id: `${id}${i}` });
    client.send({ op: 'join', group: 'refused', ref: 'join' });
    client.send({ op: 'leave', group: 'kept', ref: 'leave' });
    holdBroker(1500);
    const refusal = await client.next((f) => f.op === 'err' && f.code === 'E_OVERLOADED' && f.id !== undefined, 10_000);
    assert.match(refusal.id as string, /^x{120}\d+$/);
    const join = await client.next((f) => f.ref === 'join', 10_000);
    assert.deepEqual([join.op, join.code], ['err', 'E_OVERLOADED']);
    assert.equal((await client.next((f) => f.ref === 'leave', 10_000)).op, 'left');
    // Caught up: a join is taken again.
    let joined: Frame | null = null;
    for (let attempt = 0; joined === null && attempt < 50; attempt++) {
      client.send({ op: 'join', group: 'later', ref: `again${attempt}` });
      const reply = await client.next((f) => f.ref === `again${attempt}`, 10_000);
      if (reply.op === 'joined') joined = reply;
      else await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(joined !== null, 'a join was taken once the broker caught up');
    client.close();
  });

  test('one connection floods while others ask little: the flooder spends its allowance and is refused, a member still joins, and a new connection is welcomed and joins', async () => {
    const worker = (user: string, connectLate: boolean): Worker => new Worker(new URL('./fixtures/late-joiner.js', import.meta.url), { workerData: { port: server.port, user, group: 'quiet', delayMs: 400, connectLate } });
    const posted = (thread: Worker, key: string): Promise<Record<string, unknown>> => new Promise((resolve) => thread.on('message', (m: Record<string, unknown>) => key in m && resolve(m)));
    const joiner = worker('honest', false);
    const newcomer = worker('newcomer', true);
    try {
      await Promise.all([posted(joiner, 'ready'), posted(newcomer, 'ready')]);
      const answers = [posted(joiner, 'answer'), posted(newcomer, 'answer')];
      const flooder = await member(server.port, 'flooder2');
      for (let i = 0; i < 3000; i++) flooder.send({ op: 'ack', id: `${'x'.repeat(120)}${i}` });
      flooder.send({ op: 'join', group: 'loud', ref: 'join' });
      joiner.postMessage('go');
      newcomer.postMessage('go');
      holdBroker(1500);
      const join = await flooder.next((f) => f.ref === 'join', 10_000);
      assert.deepEqual([join.op, join.code], ['err', 'E_OVERLOADED'], "the flooder's join, past its allowance");
      const [asked, connected] = await Promise.all(answers);
      assert.deepEqual(asked!.answer, { op: 'joined', code: null }, 'asked while the broker was behind, and taken');
      assert.deepEqual(connected!.answer, { op: 'joined', code: null }, 'connected while the broker was behind (under twice the bound): welcomed, not closed with 1013');
      flooder.close();
    } finally {
      await Promise.all([joiner.terminate(), newcomer.terminate()]);
    }
  });

  test('a flood spread over many connections from one address, each under its own allowance, is refused past the address\'s, and a member on another address still joins', async () => {
    const joiner = new Worker(new URL('./fixtures/late-joiner.js', import.meta.url), { workerData: { port: server.port, user: 'elsewhere', group: 'quiet', delayMs: 400, localAddress: '127.0.0.3' } });
    const posted = (key: string): Promise<Record<string, unknown>> => new Promise((resolve) => joiner.on('message', (m: Record<string, unknown>) => key in m && resolve(m)));
    const flooders: TestClient[] = [];
    try {
      await posted('ready');
      const answer = posted('answer');
      // 60 x 15 acks of about 180 bytes: twice the ring's overflow bound several times over, had
      // each connection only its own allowance of 16 to spend.
      for (let i = 0; i < 60; i++) flooders.push(await member(server.port, `spread${i}`, [], { localAddress: '127.0.0.2' }));
      for (const [n, flooder] of flooders.entries()) for (let i = 0; i < ALLOWANCE - 1; i++) flooder.send({ op: 'ack', id: `${'x'.repeat(120)}${n}-${i}` });
      const last = flooders.at(-1)!;
      last.send({ op: 'join', group: 'loud', ref: 'join' });
      joiner.postMessage('go');
      holdBroker(1500);
      const join = await last.next((f) => f.ref === 'join', 10_000);
      assert.deepEqual([join.op, join.code], ['err', 'E_OVERLOADED'], 'its 16th record, within its own allowance: its address had spent its own');
      assert.deepEqual((await answer).answer, { op: 'joined', code: null }, 'asked from another address while the broker was behind, and taken');
    } finally {
      for (const flooder of flooders) flooder.close();
      await joiner.terminate();
    }
  });

  test('an ack deadline that passes meanwhile does not count as an attempt: the message comes again once the broker caught up, even with max_attempts 1', async () => {
    await deadlineWhileBehind(server);
  });

  test('so on a cluster node: its SWEEP puts the deadline off while the node is behind', { skip: announceSkip('broker-backlog.test') }, async () => {
    const redis = await startPrivateRedis();
    const node = await startInProcess(
      nodeConfig(redis.url, `behind${process.pid}:`, 1, {
        websocket: {
          server: { shards: 1, max_payload: 16_384 },
          limits: { messages_per_second: 0 },
          performance: { ring_bytes: 65_536, ring_overflow_bytes: 16_384 },
          delivery: { ack_timeout: 0.5, max_attempts: 1 },
        },
      }),
    );
    try {
      await deadlineWhileBehind(node);
      assert.equal((await getJson(node.port, '/admin/dlq')).body.count, 0);
    } finally {
      await node.close();
      await redis.stop();
    }
  });
});

/**
 * An ack sent in time and refused (E_OVERLOADED) behind 3,000 others while the broker, this
 * thread, is held past the message's deadline: the message must come again, not be dead-lettered.
 * The recipient floods from a thread of its own, so its acks arrive while the broker is held or
 * just before; the backlog may have drained by the deadline (when the flood came before the
 * hold), and the deadline is still not counted, for the shard told the recipient the message
 * would come again (judged on the backlog at the deadline alone, it was dead-lettered in 2 runs
 * of 3).
 */
async function deadlineWhileBehind(server: RunningServer): Promise<void> {
  const worker = new Worker(new URL('./fixtures/ack-flood-recipient.js', import.meta.url), { workerData: { port: server.port, user: 'recipient', flood: 3000, ackAgain: true } });
  const posted = (key: string): Promise<Record<string, unknown>> => new Promise((resolve) => worker.on('message', (m: Record<string, unknown>) => key in m && resolve(m)));
  try {
    await posted('ready');
    const [received, answered, again, secondAnswer] = ['received', 'answer', 'again', 'secondAnswer'].map((key) => posted(key));
    const sender = await member(server.port, 'sender');
    sender.send({ op: 'send', to: 'recipient', data: 'once', ref: 's' });
    await received;
    holdBroker(1500);
    assert.equal(((await answered!).answer as Frame | null)?.code, 'E_OVERLOADED', 'the real ack, behind the flood, is refused');
    assert.equal((await again!).again, 'once', 'and the message comes again');
    assert.equal((await secondAnswer!).secondAnswer, null, 'the second ack is taken');
    sender.close();
  } finally {
    await worker.terminate();
  }
}

/**
 * The recipient acks in time, behind 12,000 other acks (about 2 MB: they fit the default 4 MiB
 * ring, so nothing waits in the shard); the broker, held busy meanwhile, reads 4,096 records a
 * turn, so the real ack lies beyond its timers' turn. With max_attempts 1 a missed deadline
 * would dead-letter the message.
 */
async function ackBehindTheRing(server: RunningServer): Promise<void> {
  const worker = new Worker(new URL('./fixtures/ack-flood-recipient.js', import.meta.url), { workerData: { port: server.port, user: 'deep', flood: 12_000 } });
  const posted = (key: string): Promise<Record<string, unknown>> => new Promise((resolve) => worker.on('message', (m: Record<string, unknown>) => key in m && resolve(m)));
  try {
    await posted('ready');
    const received = posted('received');
    const answered = posted('answer');
    const sender = await member(server.port, 'deep-sender');
    sender.send({ op: 'send', to: 'deep', data: 'once', ref: 's' });
    await received;
    holdBroker(2500);
    assert.equal((await answered).answer, null, 'the ack was taken');
    await new Promise((resolve) => setTimeout(resolve, 300));
    const letters = await getJson(server.port, '/admin/dlq');
    assert.equal(letters.body.count, 0);
    sender.close();
  } finally {
    await worker.terminate();
  }
}

describe('a broker behind on a shard\'s ring (records unread in it, none left in the shard)', () => {
  test('reads the acks that came in time before it counts a deadline as missed (max_attempts 1: not dead-lettered)', async () => {
    const server = await startOneShard(1);
    try {
      await ackBehindTheRing(server);
    } finally {
      await server.close();
    }
  });

  test('a cluster node reads them before each sweep, so their ACKs reach Redis first', { skip: announceSkip('broker-backlog.test') }, async () => {
    const redis = await startPrivateRedis();
    const server = await startInProcess(nodeConfig(redis.url, `backlog${process.pid}:`, 1, { websocket: { server: { shards: 1, max_payload: 16_384 }, limits: { messages_per_second: 0 }, delivery: { ack_timeout: 1, max_attempts: 1 } } }));
    try {
      await ackBehindTheRing(server);
    } finally {
      await server.close();
      await redis.stop();
    }
  });
});

/**
 * A user's messages in flight go to its new connections at once up to a window's worth
 * (delivery.max_inflight_per_user) per ack_timeout; past that they come at their ack deadlines.
 * A review's user with 10,000 small messages it never acknowledged reconnected 34 times a
 * second: each connection made the broker read back and encode all 10,000, and every other
 * user's send waited 1-3 s for its ack.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RunningServer } from '../src/index.js';
import { member, type Frame } from './helpers/client.js';
import { nextMsgs } from './helpers/messaging.js';
import { announceSkip, nodeConfig, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { startInProcess } from './helpers/server.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Sends 20 messages to an offline user, then connects it three times in a row: what each connection got at once. */
async function reconnectThrice(port: number, send: (n: number) => Promise<unknown>): Promise<void> {
  for (let n = 0; n < 20; n++) await send(n);
  const first = await member(port, 'flaky');
  assert.equal((await nextMsgs(first, 20)).length, 20, 'the first delivery');
  first.close();
  const second = await member(port, 'flaky');
  assert.equal((await nextMsgs(second, 20)).length, 20, 'resent at once: the budget holds a window');
  second.close();
  const third = await member(port, 'flaky');
  assert.equal(third.welcome.pending, 20);
  await sleep(500);
  assert.equal(third.frames.filter((f: Frame) => f.op === 'msg' || f.op === 'batch').length, 0, 'the budget is spent: nothing resent at once');
  const later = await nextMsgs(third, 20, 8000);
  assert.deepEqual(later.map((m) => (m.data as { n: number }).n).sort((a, b) => a - b), Array.from({ length: 20 }, (_, n) => n), 'at their ack deadline, all of them');
  for (const m of later) third.send({ op: 'ack', id: m.id });
  third.close();
}

/**
 * A window of 4 and 8 messages: two connections take 1-4 and close, so the third, a second
 * later, has half the budget back: not enough for all four. It gets 1-4 at their deadline, then
 * 5-8 as it acks: in order (a part resent had let 5 and 6 overtake 3 and 4).
 */
async function inOrderOverBudget(port: number, send: (n: number) => Promise<unknown>): Promise<void> {
  for (let n = 1; n <= 8; n++) await send(n);
  for (const _ of [1, 2]) {
    const early = await member(port, 'orderly');
    assert.equal((await nextMsgs(early, 4)).length, 4);
    early.close();
    await early.closed;
  }
  await sleep(1000); // half the budget back: enough for part of what is in flight
  const late = await member(port, 'orderly');
  const order: number[] = [];
  while (order.length < 8) {
    for (const m of await nextMsgs(late, 1, 10_000)) {
      order.push((m.data as { n: number }).n);
      late.send({ op: 'ack', id: m.id });
    }
  }
  assert.deepEqual(order, [1, 2, 3, 4, 5, 6, 7, 8]);
  late.close();
}

const LIMITS = { max_inflight_per_user: 20, ack_timeout: 3 };

describe('a user reconnecting in a loop with messages in flight', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { server: { shards: 1 }, delivery: LIMITS } });
  });
  after(() => server.close());

  test('a new connection gets them again within the budget; one more at once gets them at their ack deadline, not before', async () => {
    await reconnectThrice(server.port, (n) => server.send('flaky', { n }));
  });
});

describe('... over the budget, newer messages stay behind the ones in flight', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { server: { shards: 1 }, delivery: { max_inflight_per_user: 4, ack_timeout: 2 } } });
  });
  after(() => server.close());

  test('the third connection gets 1-8 in order', async () => {
    await inOrderOverBudget(server.port, (n) => server.send('orderly', { n }));
  });
});

describe('... on a cluster node, whose CONNECT lists no more of them than the budget', { skip: announceSkip('reconnect-resend.test') }, () => {
  let redis: PrivateRedis;
  let node: RunningServer;
  before(async () => {
    redis = await startPrivateRedis();
    node = await startInProcess(nodeConfig(redis.url, 'resend:', 1, { websocket: { delivery: { ...LIMITS, max_backoff: 3 } } }));
  });
  after(async () => {
    await node?.close();
    await redis?.stop();
  });

  test('connections opening at once share the budget: 10 of them get a window again between them, not each', async () => {
    const sender = await member(node.port, 'sender-many');
    for (let n = 0; n < 20; n++) {
      sender.send({ op: 'send', to: 'many-tabs', data: { n }, ref: `m${n}` });
      await sender.next((f) => f.ref === `m${n}`);
    }
    const first = await member(node.port, 'many-tabs');
    await nextMsgs(first, 20);
    const tabs = await Promise.all(Array.from({ length: 10 }, () => member(node.port, 'many-tabs')));
    await sleep(1000);
    const resent = tabs.reduce((sum, tab) => sum + tab.frames.reduce((k, f: Frame) => k + (f.op === 'batch' ? (f.msgs as Frame[]).length : f.op === 'msg' ? 1 : 0), 0), 0);
    assert.ok(resent <= 20, `${resent} resent in all`);
    for (const c of [first, ...tabs, sender]) c.close();
  });

  test('the same, with Redis holding the messages', async () => {
    const sender = await member(node.port, 'sender');
    await reconnectThrice(node.port, async (n) => {
      sender.send({ op: 'send', to: 'flaky', data: { n }, ref: `s${n}` });
      await sender.next((f) => f.ref === `s${n}`);
    });
    sender.close();
  });
});

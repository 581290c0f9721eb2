import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { member, onShard, type Frame, type TestClient } from './helpers/client.js';
import { adminJson, nextMsgs, settle, until } from './helpers/messaging.js';
import { startInProcess } from './helpers/server.js';
import type { RunningServer } from '../src/index.js';

type Member = TestClient & { welcome: Frame };

/** Two connections of `user`, one on each of the two shards. */
async function onBothShards(port: number, user: string): Promise<Member[]> {
  return [await onShard(0, () => member(port, user)), await onShard(1, () => member(port, user))];
}

async function deadLetters(port: number): Promise<Array<Record<string, unknown>>> {
  return (await adminJson(port, 'GET', '/admin/dlq?limit=1000')).body.items as Array<Record<string, unknown>>;
}

describe('send: direct, acknowledged, redelivered, dead-lettered', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { delivery: { ack_timeout: 0.2, max_attempts: 3 }, performance: { batch_size: 3 } } });
  });
  after(() => server.close());

  test('the sender gets ack {ref, id}; every connection of the recipient, on every shard, gets the msg with ackReq', async () => {
    const bobs = await onBothShards(server.port, 'bob');
    const alice = await member(server.port, 'alice');
    alice.send({ op: 'send', to: 'bob', data: { text: 'hi' }, ref: 's1' });
    const ack = await alice.next((f) => f.op === 'ack');
    assert.equal(ack.ref, 's1');
    for (const bob of bobs) {
      const [msg] = await nextMsgs(bob, 1);
      assert.deepEqual({ ...msg, ts: 0 }, { op: 'msg', id: ack.id, from: 'alice', data: { text: 'hi' }, pri: 1, ts: 0, ackReq: true });
    }
    bobs[0]!.send({ op: 'ack', id: ack.id });
    await settle(bobs[0]!);
    for (const client of [...bobs, alice]) client.close();
  });

  test("/stats shows the broker's counters, sampled every metrics_collection_interval", async () => {
    const messaging = await until(async () => {
      const { body } = await adminJson(server.port, 'GET', '/stats');
      const counters = body.messaging as Record<string, number>;
      return counters.accepted! >= 1 && counters.acked! >= 1 ? counters : undefined;
    }, 'the broker counters in /stats');
    assert.ok(messaging.delivered! >= messaging.acked!);
  });

  test('/stats messaging.stored counts the messages the broker holds now, such as one waiting for an offline user', async () => {
    await server.send('nobody-home', 'waiting');
    const messaging = await until(async () => {
      const { body } = await adminJson(server.port, 'GET', '/stats');
      const counters = body.messaging as Record<string, number>;
      return counters.stored! >= 1 ? counters : undefined;
    }, 'messaging.stored in /stats');
    assert.ok(messaging.stored_bytes! >= '"waiting"'.length);
  });

  test('an unacknowledged message is delivered again until it is acknowledged, then no more', async () => {
    const carl = await member(server.port, 'carl');
    const id = await server.send('carl', 'again');
    const first = await nextMsgs(carl, 1);
    const second = await nextMsgs(carl, 1);
    assert.equal(first[0]!.id, id);
    assert.equal(second[0]!.id, id, 'the same message, redelivered after ack_timeout');
    const acked = server.messagingStats().acked;
    carl.send({ op: 'ack', id });
    await until(() => (server.messagingStats().acked > acked ? true : undefined), 'the ack');
    // A second ack of the same id proves the first removed it.
    carl.send({ op: 'ack', id });
    assert.equal((await carl.next((f) => f.op === 'err')).code, 'E_UNKNOWN_ID');
    carl.close();
  });

  test('after max_attempts deliveries without ack the message is dead-lettered with the reason and attempt count', async () => {
    const dora = await member(server.port, 'dora');
    const id = await server.send('dora', { n: 1 });
    const deliveries = await nextMsgs(dora, 3);
    assert.ok(deliveries.every((m) => m.id === id));
    const letter = await until(async () => (await deadLetters(server.port)).find((l) => l.id === id), 'the dead letter');
    assert.equal(letter.attempts, 3);
    assert.match(String(letter.reason), /not acknowledged after 3 deliveries/);
    assert.deepEqual(letter.data, { n: 1 });
    assert.equal(letter.to, 'dora');
    // Acknowledging it now is too late: it is no longer awaiting an ack.
    dora.send({ op: 'ack', id });
    assert.equal((await dora.next((f) => f.op === 'err')).code, 'E_UNKNOWN_ID');
    dora.close();
  });

  test('offline messages wait, welcome.pending counts them, and they arrive by priority then acceptance order', async () => {
    const sender = await member(server.port, 'sender');
    const sent: Array<[string, number]> = [['low-1', 0], ['normal-1', 1], ['high-1', 2], ['low-2', 0], ['critical-1', 3], ['normal-2', 1], ['high-2', 2]];
    for (const [text, pri] of sent) {
      sender.send({ op: 'send', to: 'erin', data: text, pri, ref: text });
      await sender.next((f) => f.op === 'ack' && f.ref === text);
    }
    const erin = await member(server.port, 'erin');
    assert.equal(erin.welcome.pending, sent.length);
    const msgs = await nextMsgs(erin, sent.length);
    assert.deepEqual(msgs.map((m) => m.data), ['critical-1', 'high-1', 'high-2', 'normal-1', 'normal-2', 'low-1', 'low-2']);
    assert.deepEqual(msgs.map((m) => m.pri), [3, 2, 2, 1, 1, 0, 0]);
    for (const m of msgs) erin.send({ op: 'ack', id: m.id });
    await settle(erin);
    erin.close();
    sender.close();
  });

  test('messages ready together go out as batch frames of at most batch_size; CRITICAL is never held in a batch', async () => {
    const sender = await member(server.port, 'batcher');
    for (let i = 0; i < 7; i++) {
      sender.send({ op: 'send', to: 'fay', data: i, ref: `b${i}` });
      await sender.next((f) => f.op === 'ack' && f.ref === `b${i}`);
    }
    sender.send({ op: 'send', to: 'fay', data: 'urgent', pri: 3, ref: 'c' });
    await sender.next((f) => f.op === 'ack' && f.ref === 'c');
    const fay = await member(server.port, 'fay');
    assert.equal(fay.welcome.pending, 8);
    const frames: Frame[] = [];
    let received = 0;
    while (received < 8) {
      const frame = await fay.next((f) => f.op === 'msg' || f.op === 'batch');
      frames.push(frame);
      received += frame.op === 'batch' ? (frame.msgs as Frame[]).length : 1;
    }
    assert.equal(frames[0]!.op, 'msg', 'CRITICAL first, on its own');
    assert.equal(frames[0]!.data, 'urgent');
    const batches = frames.slice(1);
    assert.ok(batches.every((f) => f.op === 'batch' ? (f.msgs as Frame[]).length <= 3 : true));
    assert.ok(batches.some((f) => f.op === 'batch'));
    const rest = batches.flatMap((f) => (f.op === 'batch' ? (f.msgs as Frame[]) : [f]));
    assert.deepEqual(rest.map((m) => m.data), [0, 1, 2, 3, 4, 5, 6]);
    for (const m of [frames[0]!, ...rest]) fay.send({ op: 'ack', id: m.id });
    await settle(fay);
    fay.close();
    sender.close();
  });

  test('scheduled: a send with `at` is acknowledged at once and delivered no earlier than `at`', async () => {
    const gil = await member(server.port, 'gil');
    const sender = await member(server.port, 'scheduler');
    const at = Date.now() + 400;
    sender.send({ op: 'send', to: 'gil', data: 'later', at, ref: 'later' });
    const ack = await sender.next((f) => f.op === 'ack');
    const [msg] = await nextMsgs(gil, 1);
    assert.ok(Date.now() >= at, 'not before at');
    assert.equal(msg!.id, ack.id);
    assert.equal(msg!.data, 'later');
    gil.send({ op: 'ack', id: msg!.id });
    await settle(gil);
    gil.close();
    sender.close();
  });

  test('the embedding API: send() resolves with the id once stored; publish() reaches the group', async () => {
    const hal = await member(server.port, 'hal', ['news']);
    const id = await server.send('hal', { hello: 'from the app' }, { pri: 2 });
    const [msg] = await nextMsgs(hal, 1);
    assert.equal(msg!.id, id);
    assert.equal(msg!.from, '@server');
    assert.equal(msg!.pri, 2);
    hal.send({ op: 'ack', id });
    const pubId = server.publish('news', { headline: 'x' });
    const news = await hal.next((f) => f.op === 'msg' && f.group === 'news');
    assert.equal(news.id, pubId);
    assert.equal(news.ackReq, undefined, 'a publish is at-most-once: no ack requested');
    await assert.rejects(server.send('not a user', 1), /user must match/);
    hal.close();
  });
});

describe('bad input around reliable messages', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { delivery: { ack_timeout: 5 } } });
  });
  after(() => server.close());

  test('ack of an unknown id, a duplicate ack, an ack of someone else\'s message: E_UNKNOWN_ID naming the id, nothing else affected', async () => {
    const ivy = await member(server.port, 'ivy');
    const mallory = await member(server.port, 'mallory');
    ivy.send({ op: 'ack', id: 'no-such-id' });
    const refused = await ivy.next((f) => f.op === 'err');
    assert.deepEqual([refused.code, refused.id, refused.ref], ['E_UNKNOWN_ID', 'no-such-id', undefined], 'the ack op has no ref: the err names the id instead');
    const id = await server.send('ivy', 'mine');
    const [msg] = await nextMsgs(ivy, 1);
    mallory.send({ op: 'ack', id });
    assert.equal((await mallory.next((f) => f.op === 'err')).code, 'E_UNKNOWN_ID');
    ivy.send({ op: 'ack', id: msg!.id });
    await settle(ivy);
    ivy.send({ op: 'ack', id: msg!.id });
    assert.equal((await ivy.next((f) => f.op === 'err')).code, 'E_UNKNOWN_ID');
    // Both connections still work.
    mallory.send({ op: 'send', to: 'ivy', data: 'still fine', ref: 'ok' });
    await mallory.next((f) => f.op === 'ack' && f.ref === 'ok');
    assert.equal((await nextMsgs(ivy, 1))[0]!.data, 'still fine');
    ivy.close();
    mallory.close();
  });

  const badFrames: Array<[string, Record<string, unknown>, RegExp]> = [
    ['send to a malformed user id', { op: 'send', to: 'a b', data: 1, ref: 'r' }, /to must be a user id/],
    ['send to a non-string user id', { op: 'send', to: 42, data: 1, ref: 'r' }, /to must be a user id/],
    ['send without data', { op: 'send', to: 'x', ref: 'r' }, /send needs data/],
    ['send with a bad at', { op: 'send', to: 'x', data: 1, at: 'soon', ref: 'r' }, /at must be/],
    ['any with a bad strategy', { op: 'any', group: 'g', data: 1, strategy: 'random', ref: 'r' }, /strategy must be one of/],
    ['ack without an id', { op: 'ack', ref: 'r' }, /ack needs an id/],
  ];
  for (const [name, frame, message] of badFrames) {
    test(`${name}: E_BAD_FRAME with the ref, and the connection stays usable`, async () => {
      const client = await member(server.port, 'sloppy');
      client.send(frame);
      const err = await client.next((f) => f.op === 'err');
      assert.equal(err.code, 'E_BAD_FRAME');
      assert.equal(err.ref, 'r');
      assert.match(String(err.message), message);
      client.send({ op: 'send', to: 'sloppy', data: 'ok', ref: 'after' });
      await client.next((f) => f.op === 'ack' && f.ref === 'after');
      client.close();
    });
  }
});

describe('offline buffer bound', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { delivery: { max_pending_per_user: 3 } } });
  });
  after(() => server.close());

  test('a full queue drops its oldest LOW to the dead-letter queue; with no LOW left the send gets E_QUEUE_FULL', async () => {
    const sender = await member(server.port, 'flood');
    const send = async (data: string, pri: number): Promise<Frame> => {
      sender.send({ op: 'send', to: 'jan', data, pri, ref: data });
      return sender.next((f) => f.ref === data);
    };
    for (const [data, pri] of [['low-1', 0], ['low-2', 0], ['normal-1', 1], ['normal-2', 1], ['high-1', 2]] as const) {
      assert.equal((await send(data, pri)).op, 'ack', data);
    }
    const refused = await send('normal-3', 1);
    assert.equal(refused.op, 'err');
    assert.equal(refused.code, 'E_QUEUE_FULL');
    const letters = await deadLetters(server.port);
    assert.deepEqual(letters.map((l) => l.data).sort(), ['low-1', 'low-2']);
    assert.ok(letters.every((l) => /queue full: dropped as the oldest LOW/.test(String(l.reason))));
    assert.equal(server.messagingStats().dropped_low, 2);
    const jan = await member(server.port, 'jan');
    assert.equal(jan.welcome.pending, 3);
    assert.deepEqual((await nextMsgs(jan, 3)).map((m) => m.data), ['high-1', 'normal-1', 'normal-2']);
    jan.close();
    sender.close();
  });
});

describe('any with require_membership (the default)', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess();
  });
  after(() => server.close());

  test('any to a group the sender has not joined gets E_NOT_MEMBER', async () => {
    const outsider = await member(server.port, 'outsider');
    outsider.send({ op: 'any', group: 'club', data: 1, ref: 'nm' });
    const err = await outsider.next((f) => f.op === 'err');
    assert.equal(err.code, 'E_NOT_MEMBER');
    assert.equal(err.ref, 'nm');
    outsider.close();
  });
});

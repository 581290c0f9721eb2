/**
 * The client SDK against the real server (in this process, two shards, real sockets): what an
 * application does in a few lines, and what the SDK guarantees it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { OcsError, type Message } from '../src/client/index.js';
import type { RunningServer } from '../src/index.js';
import { member } from './helpers/client.js';
import { until } from './helpers/messaging.js';
import { sdkClient } from './helpers/sdk.js';
import { startInProcess } from './helpers/server.js';

describe('the client SDK against a 2-shard server', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { groups: { require_membership: true }, delivery: { ack_timeout: 1 }, history: [{ pattern: 'kept.*', size: 100 }] } });
  });
  after(() => server.close());

  test('connect, join, publish: the promise resolves with the message id the members receive', async () => {
    const alice = sdkClient(server.port, { user: 'alice' });
    const bob = sdkClient(server.port, { user: 'bob' });
    const welcome = await alice.client.connect();
    assert.equal(welcome.user, 'alice');
    await bob.client.connect();
    const joined = await alice.client.join('lobby');
    assert.deepEqual(joined, { group: 'lobby', history: false });
    await bob.client.join('lobby');
    const id = await alice.client.publish('lobby', { text: 'hi' });
    const [got] = await bob.received(1);
    assert.equal(got!.id, id);
    assert.deepEqual([got!.from, got!.group, got!.data], ['alice', 'lobby', { text: 'hi' }]);
    await Promise.all([alice.client.close(), bob.client.close()]);
  });

  test('a refused request rejects with the protocol code: publish to a group not joined is E_NOT_MEMBER', async () => {
    const carol = sdkClient(server.port, { user: 'carol' });
    await carol.client.connect();
    await assert.rejects(carol.client.publish('elsewhere', 1), (err: unknown) => err instanceof OcsError && err.code === 'E_NOT_MEMBER');
    await assert.rejects(carol.client.join('bad group name'), (err: unknown) => err instanceof OcsError && err.code === 'E_BAD_FRAME');
    assert.equal(carol.client.state, 'open', 'a refusal does not close the connection');
    await carol.client.close();
  });

  test('send: stored, delivered with ackReq, acknowledged automatically, so it is not redelivered', async () => {
    const dan = sdkClient(server.port, { user: 'dan' });
    const erin = sdkClient(server.port, { user: 'erin' });
    await Promise.all([dan.client.connect(), erin.client.connect()]);
    const id = await dan.client.send('erin', { n: 1 });
    const [got] = await erin.received(1);
    assert.equal(got!.id, id);
    assert.equal(got!.ackReq, true);
    await until(() => (server.messagingStats().acked >= 1 ? true : undefined), 'the ack reached the broker');
    await Promise.all([dan.client.close(), erin.client.close()]);
  });

  test('manual acks: with autoAck false the message stays unacknowledged until ack(id)', async () => {
    const before = server.messagingStats().acked;
    const frank = sdkClient(server.port, { user: 'frank', autoAck: false });
    await frank.client.connect();
    await server.send('frank', 'manual');
    const [got] = await frank.received(1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(server.messagingStats().acked, before, 'nothing acknowledged yet');
    frank.client.ack(got!.id);
    await until(() => (server.messagingStats().acked === before + 1 ? true : undefined), 'the manual ack');
    await frank.client.close();
  });

  test('requests made before the connection opens wait for it; close() fails what is still waiting with E_CLOSED', async () => {
    const hank = sdkClient(server.port, { user: 'hank' });
    const joined = hank.client.join('later');
    const published = hank.client.publish('later', 'queued');
    await hank.client.connect();
    await joined;
    assert.equal(typeof (await published), 'string');
    const idle = sdkClient(server.port, { user: 'ivy' });
    const waiting = idle.client.publish('nowhere', 1);
    await idle.client.close();
    await assert.rejects(waiting, (err: unknown) => err instanceof OcsError && err.code === 'E_CLOSED');
    await hank.client.close();
  });

  test('a listener that throws: no ack, the message comes again and is handed over again', async () => {
    const jo = sdkClient(server.port, { user: 'jo', reconnect: { initialMs: 50, soonMs: 50 } });
    let calls = 0;
    jo.client.on('message', () => {
      calls++;
      if (calls === 1) throw new Error('handler bug');
    });
    await jo.client.connect();
    await server.send('jo', 'retry me');
    await until(() => (jo.errors.length === 1 ? true : undefined), 'the handler error reported');
    assert.equal(jo.errors[0]!.message, 'handler bug');
    // The broker redelivers after its ack timeout; the SDK lets the redelivery through.
    await until(() => (calls >= 2 ? true : undefined), 'redelivery handed over', 20_000);
    await jo.client.close();
  });

  test('presence: a snapshot of who is in the group, then join and leave events for a join with presence: true', async () => {
    const kim = sdkClient(server.port, { user: 'kim' });
    const events: Array<{ joins: string[]; leaves: string[] }> = [];
    kim.client.on('presence', (p) => p.group === 'room' && events.push(p));
    await kim.client.connect();
    await kim.client.join('room', { presence: true });
    const raw = await member(server.port, 'raw', ['room']);
    await until(() => (events.some((e) => e.joins.includes('raw')) ? true : undefined), 'raw joining');
    const snapshot = await kim.client.presence('room');
    assert.deepEqual([...snapshot.users!.keys()].sort(), ['kim', 'raw']);
    assert.deepEqual(snapshot.total, { users: 2, conns: 2 });
    assert.equal((await kim.client.presence('room', { counts: true })).users, undefined);
    raw.close();
    await until(() => (events.some((e) => e.leaves.includes('raw')) ? true : undefined), 'raw leaving');
    await kim.client.close();
  });

  test('history: the kept messages of a group, by pages', async () => {
    const lee = sdkClient(server.port, { user: 'lee' });
    await lee.client.connect();
    await lee.client.join('kept.room');
    for (let n = 1; n <= 5; n++) await lee.client.publish('kept.room', { n });
    const first = await lee.client.history('kept.room', { limit: 3 });
    assert.deepEqual(first.msgs.map((m) => (m.data as { n: number }).n), [1, 2, 3]);
    assert.equal(first.more, true);
    const rest = await lee.client.history('kept.room', { since: first.msgs.at(-1)!.offset });
    assert.deepEqual(rest.msgs.map((m) => (m.data as { n: number }).n), [4, 5]);
    assert.equal(rest.offset, 5);
    await assert.rejects(lee.client.history('no-history-here'), (err: unknown) => err instanceof OcsError);
    await lee.client.close();
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, member, onShard, type Frame, type TestClient } from './helpers/client.js';
import { eventsUntilQuiet as quietEvents, isEvent } from './helpers/presence.js';
import { startInProcess } from './helpers/server.js';
import { signToken } from './helpers/tokens.js';
import type { RunningServer } from '../src/index.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Asks for the presence of `group` and returns the answer. */
async function presence(client: TestClient, group: string, counts?: boolean): Promise<Frame> {
  const ref = `p-${Math.random()}`;
  client.send({ op: 'presence', group, ref, ...(counts !== undefined && { counts }) });
  return client.next((f) => f.ref === ref);
}

/**
 * Asks until the answer satisfies `ok` (2 s at most): a join on another shard reaches the
 * broker over that shard's ring, so another connection's answer may precede it by a moment.
 */
async function presenceUntil(client: TestClient, group: string, ok: (answer: Frame) => boolean, counts?: boolean): Promise<Frame> {
  const until = Date.now() + 2000;
  for (;;) {
    const answer = await presence(client, group, counts);
    if (ok(answer) || Date.now() > until) return answer;
    await sleep(20);
  }
}

/** Joins `group` asking for its presence events. */
async function watch(client: TestClient, group: string): Promise<void> {
  client.send({ op: 'join', group, presence: true, ref: `w-${group}` });
  await client.next((f) => f.op === 'joined' && f.ref === `w-${group}`);
}

/** Presence events of `group` until it has been quiet for 800 ms. */
const eventsUntilQuiet = (client: TestClient, group: string, quietMs = 800) => quietEvents(client, group, quietMs);

describe('presence on a 2-shard server', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { presence: { window: 0.3, max_list: 3 }, limits: { bad_frames_before_close: 100 } } });
  });
  after(() => server.close());

  test('presence lists the users of a group on every shard with their connection counts; counts: true only the totals', async () => {
    const a = await onShard(0, () => member(server.port, 'alice'));
    const a2 = await onShard(1, () => member(server.port, 'alice'));
    const b = await onShard(1, () => member(server.port, 'bob'));
    for (const c of [a, a2, b]) {
      c.send({ op: 'join', group: 'g.list', ref: 'j' });
      await c.next((f) => f.op === 'joined');
    }
    const answer = await presenceUntil(b, 'g.list', (f) => (f.total as Record<string, number>).conns === 3);
    assert.deepEqual(answer, { op: 'presence', group: 'g.list', ref: answer.ref, users: { alice: 2, bob: 1 }, total: { users: 2, conns: 3 } });
    const totals = await presence(a, 'g.list', true);
    assert.deepEqual(totals, { op: 'presence', group: 'g.list', ref: totals.ref, total: { users: 2, conns: 3 } });
    for (const c of [a, a2, b]) c.close();
  });

  test('over websocket.presence.max_list users, only the totals are answered', async () => {
    const clients = [];
    for (let i = 0; i < 4; i++) clients.push(await member(server.port, `big${i}`, ['g.big']));
    const answer = await presenceUntil(clients[0]!, 'g.big', (f) => (f.total as Record<string, number>).conns === 4);
    assert.equal(answer.users, undefined);
    assert.deepEqual(answer.total, { users: 4, conns: 4 });
    for (const c of clients) c.close();
  });

  test('watchers get joins and leaves of users across shards, not of every connection', async () => {
    const watcher = await onShard(0, (i) => member(server.port, `watcher${i}`));
    await watch(watcher, 'g.events');
    assert.deepEqual(await eventsUntilQuiet(watcher, 'g.events'), { joins: [watcher.welcome.user], leaves: [], frames: 1 });
    const carol = await onShard(1, () => member(server.port, 'carol', ['g.events']));
    assert.deepEqual(await eventsUntilQuiet(watcher, 'g.events'), { joins: ['carol'], leaves: [], frames: 1 });
    // carol's second connection, and its going again, are no news: carol stays.
    const carol2 = await member(server.port, 'carol', ['g.events']);
    carol2.close();
    await carol2.closed;
    assert.deepEqual(await eventsUntilQuiet(watcher, 'g.events'), { joins: [], leaves: [], frames: 0 });
    carol.send({ op: 'leave', group: 'g.events', ref: 'l' });
    await carol.next((f) => f.op === 'left');
    assert.deepEqual(await eventsUntilQuiet(watcher, 'g.events'), { joins: [], leaves: ['carol'], frames: 1 });
    // A member that does not watch gets no events.
    assert.equal(carol.frames.filter(isEvent('g.events')).length, 0);
    watcher.close();
    carol.close();
  });

  test('a connection flapping in and out within the window makes no event; the changes of one window make one', async () => {
    const watcher = await member(server.port, 'flapwatch');
    await watch(watcher, 'g.flap');
    await eventsUntilQuiet(watcher, 'g.flap');
    const flapper = await member(server.port, 'flapper');
    for (let i = 0; i < 5; i++) {
      flapper.send({ op: 'join', group: 'g.flap', ref: `j${i}` });
      flapper.send({ op: 'leave', group: 'g.flap', ref: `l${i}` });
    }
    await flapper.next((f) => f.ref === 'l4');
    const d1 = await member(server.port, 'dave', ['g.flap']);
    const d2 = await member(server.port, 'erin', ['g.flap']);
    assert.deepEqual(await eventsUntilQuiet(watcher, 'g.flap'), { joins: ['dave', 'erin'], leaves: [], frames: 1 });
    for (const c of [watcher, flapper, d1, d2]) c.close();
  });

  test('a shard crash removes its connections from every group: watchers see them leave', async () => {
    const watcher = await onShard(0, (i) => member(server.port, `crashwatch${i}`));
    await watch(watcher, 'g.crash');
    const doomed = [await onShard(1, () => member(server.port, 'doomed1', ['g.crash'])), await onShard(1, () => member(server.port, 'doomed2', ['g.crash']))];
    await eventsUntilQuiet(watcher, 'g.crash');
    assert.deepEqual((await presenceUntil(watcher, 'g.crash', (f) => (f.total as Record<string, number>).conns === 3)).total, { users: 3, conns: 3 });
    server.injectShardCrash(1);
    await Promise.all(doomed.map((c) => c.closed));
    assert.deepEqual(await eventsUntilQuiet(watcher, 'g.crash'), { joins: [], leaves: ['doomed1', 'doomed2'], frames: 1 });
    const after = await presence(watcher, 'g.crash');
    assert.deepEqual(after.users, { [watcher.welcome.user as string]: 1 });
    await server.whenRestarted(1, 1);
    watcher.close();
  });

  test('a member may ask; a non-member without a groups claim is refused E_NOT_MEMBER; bad frames E_BAD_FRAME', async () => {
    const c = await member(server.port, 'asker');
    assert.equal((await presence(c, 'g.secret')).code, 'E_NOT_MEMBER');
    for (const frame of [{ counts: 'yes' }, { group: 'bad group' }, { group: '' }, { group: 'x'.repeat(129) }]) {
      c.send({ op: 'presence', group: 'g.x', ref: 'bad', ...frame });
      assert.equal((await c.next((f) => f.ref === 'bad')).code, 'E_BAD_FRAME', JSON.stringify(frame));
    }
    c.send({ op: 'join', group: 'g.x', presence: 'yes', ref: 'badjoin' });
    assert.equal((await c.next((f) => f.ref === 'badjoin')).code, 'E_BAD_FRAME');
    c.close();
  });

  test('hostile names: users and groups called __proto__ and constructor are listed like any other', async () => {
    const p = await member(server.port, '__proto__', ['constructor']);
    const k = await member(server.port, 'constructor', ['constructor']);
    const answer = await presenceUntil(p, 'constructor', (f) => (f.total as Record<string, number>).conns === 2);
    assert.equal(Object.getOwnPropertyDescriptor(answer.users, '__proto__')?.value, 1);
    assert.equal(Object.getOwnPropertyDescriptor(answer.users, 'constructor')?.value, 1);
    p.close();
    k.close();
  });
});

describe('presence and history with tokens', () => {
  const secret = 'presence-secret';
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { auth: { secret, allow_anonymous: false }, history: [{ pattern: 'team.*', size: 10 }] } });
  });
  after(() => server.close());

  async function withClaim(sub: string, groups: string[]): Promise<TestClient> {
    const token = await signToken({ groups }, { sub, secret });
    const client = await connect(server.port, { query: `token=${token}` });
    await client.next((f) => f.op === 'welcome');
    return client;
  }

  test('a groups claim that allows the group lets its user ask without joining; one that does not gets E_FORBIDDEN', async () => {
    const insider = await withClaim('insider', ['team.*']);
    insider.send({ op: 'join', group: 'team.red', ref: 'j' });
    await insider.next((f) => f.op === 'joined');
    insider.send({ op: 'pub', group: 'team.red', data: 'hello' });
    await insider.next((f) => f.op === 'msg');
    const lead = await withClaim('lead', ['team.*']);
    assert.deepEqual((await presenceUntil(lead, 'team.red', (f) => typeof f.users === 'object' && f.users !== null && Object.keys(f.users).length > 0)).users, { insider: 1 });
    lead.send({ op: 'history', group: 'team.red', ref: 'h' });
    assert.deepEqual(((await lead.next((f) => f.ref === 'h')).msgs as Frame[]).map((m) => m.data), ['hello']);
    const outsider = await withClaim('outsider', ['other.*']);
    assert.equal((await presence(outsider, 'team.red')).code, 'E_FORBIDDEN');
    outsider.send({ op: 'history', group: 'team.red', ref: 'h2' });
    assert.equal((await outsider.next((f) => f.ref === 'h2')).code, 'E_FORBIDDEN');
    outsider.send({ op: 'join', group: 'team.red', presence: true, ref: 'j2', since: { offset: 0, epoch: 'e' } });
    assert.equal((await outsider.next((f) => f.ref === 'j2')).code, 'E_FORBIDDEN');
    await sleep(50);
    for (const c of [insider, lead, outsider]) c.close();
  });
});

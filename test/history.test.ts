import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, member, onShard, type Frame } from './helpers/client.js';
import { joinGroup as join, nextMsgs } from './helpers/history.js';
import { startInProcess } from './helpers/server.js';
import { until } from './helpers/messaging.js';
import type { RunningServer } from '../src/index.js';

const HISTORY = {
  websocket: {
    limits: { bad_frames_before_close: 100 },
    history: [
      { pattern: 'room.*', size: 10_000, ttl: 0 },
      { pattern: 'small.*', size: 3 },
      { pattern: '__proto__', size: 100 },
    ],
  },
};

describe('group history and recovery on a 2-shard server', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess(HISTORY);
  });
  after(() => server.close());

  test('messages of a history group carry consecutive offsets and the group epoch, whichever shard published them', async () => {
    const a = await onShard(0, (i) => member(server.port, `a${i}`));
    const b = await onShard(1, (i) => member(server.port, `b${i}`));
    const first = await join(a, 'room.order');
    assert.equal(first.joined.offset, 0);
    assert.match(first.joined.epoch as string, /^[0-9a-f]{16}$/);
    assert.equal(first.joined.recovered, undefined, 'recovered only answers a since');
    const second = await join(b, 'room.order');
    assert.equal(second.joined.epoch, first.joined.epoch);
    for (let i = 0; i < 20; i++) (i % 2 === 0 ? a : b).send({ op: 'pub', group: 'room.order', data: i, ref: `p${i}` });
    for (const client of [a, b]) {
      const msgs = await nextMsgs(client, 20);
      assert.deepEqual(msgs.map((m) => m.offset), Array.from({ length: 20 }, (_, i) => i + 1));
      assert.ok(msgs.every((m) => m.epoch === first.joined.epoch && m.group === 'room.order'));
    }
    // A publisher's ack leaves after its pub went to every shard: the other client's last msg can come first.
    const acks = await until(() => {
      const seen = [...a.frames, ...b.frames].filter((f) => f.op === 'ack');
      return seen.length >= 20 ? seen : undefined;
    }, 'the 20 pub acks');
    assert.equal(acks.length, 20);
    assert.deepEqual(acks.map((f) => f.offset as number).sort((x, y) => x - y), Array.from({ length: 20 }, (_, i) => i + 1));
    a.close();
    b.close();
  });

  test('a group without history is joined and published to as before: no offset, no epoch', async () => {
    const a = await member(server.port, 'plain');
    const { joined } = await join(a, 'lobby');
    assert.deepEqual(joined, { op: 'joined', group: 'lobby', ref: joined.ref });
    a.send({ op: 'pub', group: 'lobby', data: 'x', ref: 'p' });
    const [msg] = await nextMsgs(a, 1);
    assert.equal(msg!.offset, undefined);
    assert.equal(msg!.epoch, undefined);
    const ack = await a.next((f) => f.op === 'ack');
    assert.equal(ack.offset, undefined);
    a.close();
  });

  test('join with since replays what was missed before joined (recovered: true), then live messages follow', async () => {
    const pub = await member(server.port, 'pub1', ['room.recover']);
    const sub = await member(server.port, 'sub1');
    const { joined } = await join(sub, 'room.recover');
    for (let i = 1; i <= 3; i++) pub.send({ op: 'pub', group: 'room.recover', data: i });
    const seen = await nextMsgs(sub, 3);
    sub.close();
    await sub.closed;
    for (let i = 4; i <= 8; i++) pub.send({ op: 'pub', group: 'room.recover', data: i });
    await nextMsgs(pub, 8);
    const back = await member(server.port, 'sub1');
    const recovered = await join(back, 'room.recover', { offset: seen[2]!.offset as number, epoch: joined.epoch as string });
    assert.deepEqual(recovered.replayed.map((m) => m.data), [4, 5, 6, 7, 8]);
    assert.deepEqual(recovered.replayed.map((m) => m.offset), [4, 5, 6, 7, 8]);
    assert.equal(recovered.joined.recovered, true);
    assert.equal(recovered.joined.offset, 8);
    assert.equal(recovered.joined.epoch, joined.epoch);
    pub.send({ op: 'pub', group: 'room.recover', data: 9 });
    const [live] = await nextMsgs(back, 1);
    assert.equal(live!.offset, 9);
    pub.close();
    back.close();
  });

  test('since of another epoch, or older than the group keeps, answers recovered: false with the top and epoch', async () => {
    const pub = await member(server.port, 'pub2', ['small.kept']);
    for (let i = 1; i <= 6; i++) pub.send({ op: 'pub', group: 'small.kept', data: i });
    const msgs = await nextMsgs(pub, 6);
    const epoch = msgs[0]!.epoch as string;
    const c = await member(server.port, 'late');
    const stale = await join(c, 'small.kept', { offset: 1, epoch });
    assert.equal(stale.joined.recovered, false);
    assert.equal(stale.joined.offset, 6);
    assert.deepEqual(stale.replayed, []);
    const otherEpoch = await join(c, 'small.kept', { offset: 5, epoch: 'another' });
    assert.equal(otherEpoch.joined.recovered, false);
    assert.equal(otherEpoch.joined.epoch, epoch);
    const kept = await join(c, 'small.kept', { offset: 3, epoch });
    assert.equal(kept.joined.recovered, true);
    assert.deepEqual(kept.replayed.map((m) => m.offset), [4, 5, 6]);
    pub.close();
    c.close();
  });

  test('bad since values get E_BAD_FRAME, and the join is undone; the connection keeps working', async () => {
    const pub = await member(server.port, 'pub3', ['room.bad']);
    pub.send({ op: 'pub', group: 'room.bad', data: 1 });
    const [msg] = await nextMsgs(pub, 1);
    const c = await member(server.port, 'badsince');
    const bad: unknown[] = [
      null,
      5,
      'since',
      [],
      {},
      { offset: -1, epoch: msg!.epoch },
      { offset: 1.5, epoch: msg!.epoch },
      { offset: '1', epoch: msg!.epoch },
      { offset: 2 ** 60, epoch: msg!.epoch },
      { offset: 1, epoch: 7 },
      { offset: 1, epoch: '' },
      { offset: 1, epoch: 'e'.repeat(200) },
      { offset: 2, epoch: msg!.epoch }, // past the top (1): only the broker can tell
    ];
    for (const [i, since] of bad.entries()) {
      c.send({ op: 'join', group: 'room.bad', ref: `bad${i}`, since });
      const err = await c.next((f) => f.ref === `bad${i}`);
      assert.equal(err.op, 'err', `since ${JSON.stringify(since)}`);
      assert.equal(err.code, 'E_BAD_FRAME');
    }
    c.send({ op: 'pub', group: 'room.bad', data: 'x', ref: 'not-a-member' });
    assert.equal((await c.next((f) => f.ref === 'not-a-member')).code, 'E_NOT_MEMBER');
    const ok = await join(c, 'room.bad', { offset: 0, epoch: msg!.epoch as string });
    assert.equal(ok.joined.recovered, true);
    assert.deepEqual(ok.replayed.map((m) => m.offset), [1]);
    // A member's refused join with since: it stays one, and is told it may have missed messages, and how to get them.
    c.send({ op: 'join', group: 'room.bad', ref: 'member-bad', since: { offset: 99, epoch: msg!.epoch } });
    pub.send({ op: 'pub', group: 'room.bad', data: 2 });
    pub.send({ op: 'pub', group: 'room.bad', data: 3 });
    const refused = await c.next((f) => f.ref === 'member-bad');
    assert.equal(refused.code, 'E_BAD_FRAME');
    assert.match(String(refused.message), /you stay a member, but messages published while this join was handled may have been missed/);
    await nextMsgs(pub, 2);
    const recovered = await join(c, 'room.bad', { offset: 1, epoch: msg!.epoch as string });
    assert.equal(recovered.joined.recovered, true);
    // Those it got live before the refusal come again (the replay is from since on): the client drops them by offset.
    assert.deepEqual(recovered.replayed.map((m) => m.offset).slice(-2), [2, 3]);
    pub.close();
    c.close();
  });

  test('two refused joins with since sent together by a non-member leave it a non-member, as one does', async () => {
    const pub = await member(server.port, 'pub4', ['room.twice']);
    pub.send({ op: 'pub', group: 'room.twice', data: 1 });
    const [msg] = await nextMsgs(pub, 1);
    const c = await member(server.port, 'twice');
    // Back to back: the second reaches the shard before the broker refused the first.
    for (const ref of ['b1', 'b2']) c.send({ op: 'join', group: 'room.twice', ref, since: { offset: 50, epoch: msg!.epoch } });
    for (const ref of ['b1', 'b2']) {
      const refused = await c.next((f) => f.ref === ref);
      assert.equal(refused.code, 'E_BAD_FRAME');
      assert.doesNotMatch(String(refused.message), /you stay a member/);
    }
    c.send({ op: 'pub', group: 'room.twice', data: 'x', ref: 'not-a-member' });
    assert.equal((await c.next((f) => f.ref === 'not-a-member')).code, 'E_NOT_MEMBER');
    // And a good join behind a refused one decides the other way: a member.
    c.send({ op: 'join', group: 'room.twice', ref: 'b3', since: { offset: 50, epoch: msg!.epoch } });
    c.send({ op: 'join', group: 'room.twice', ref: 'ok' });
    assert.equal((await c.next((f) => f.ref === 'b3')).code, 'E_BAD_FRAME');
    assert.equal((await c.next((f) => f.ref === 'ok')).op, 'joined');
    c.send({ op: 'pub', group: 'room.twice', data: 'y', ref: 'member' });
    assert.equal((await c.next((f) => f.ref === 'member')).op, 'ack');
    pub.close();
    c.close();
  });

  test('history pages through a group; refusals are coded', async () => {
    const c = await member(server.port, 'reader');
    await join(c, 'room.pages');
    for (let i = 1; i <= 7; i++) c.send({ op: 'pub', group: 'room.pages', data: i });
    await nextMsgs(c, 7);
    c.send({ op: 'history', group: 'room.pages', since: 2, limit: 3, ref: 'h' });
    const page = await c.next((f) => f.op === 'history');
    assert.equal(page.ref, 'h');
    assert.deepEqual((page.msgs as Frame[]).map((m) => m.data), [3, 4, 5]);
    assert.equal(page.offset, 7);
    assert.equal(page.more, true);
    c.send({ op: 'history', group: 'room.pages', ref: 'all' });
    assert.deepEqual(((await c.next((f) => f.ref === 'all')).msgs as Frame[]).map((m) => m.offset), [1, 2, 3, 4, 5, 6, 7]);
    for (const [ref, frame, code] of [
      ['past', { since: 8 }, 'E_BAD_FRAME'],
      ['neg', { since: -1 }, 'E_BAD_FRAME'],
      ['frac', { since: 0.5 }, 'E_BAD_FRAME'],
      ['limit0', { limit: 0 }, 'E_BAD_FRAME'],
      ['limitstr', { limit: '5' }, 'E_BAD_FRAME'],
    ] as const) {
      c.send({ op: 'history', group: 'room.pages', ref, ...frame });
      assert.equal((await c.next((f) => f.ref === ref)).code, code, ref);
    }
    c.send({ op: 'history', group: 'room.other', ref: 'nm' });
    assert.equal((await c.next((f) => f.ref === 'nm')).code, 'E_NOT_MEMBER');
    await join(c, 'lobby2');
    c.send({ op: 'history', group: 'lobby2', ref: 'nh' });
    const noHistory = await c.next((f) => f.ref === 'nh');
    assert.equal(noHistory.code, 'E_BAD_FRAME');
    assert.match(noHistory.message as string, /keeps no history/);
    c.close();
  });

  test('recovery with publishers on both shards racing the reconnect: every message once, in order, 30 times over', async () => {
    const group = 'room.race';
    const publishers = [await onShard(0, (i) => member(server.port, `rp0-${i}`, [group])), await onShard(1, (i) => member(server.port, `rp1-${i}`, [group]))];
    let publishing = true;
    let sent = 0;
    const pump = (async () => {
      while (publishing) {
        for (const p of publishers) p.send({ op: 'pub', group, data: sent++ });
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    })();
    const received: number[] = [];
    let epoch = '';
    let first = -1;
    for (let round = 0; round < 30; round++) {
      // Alternate shards, so a reconnect often lands on the other one than its publishers' messages come from.
      const sub = await onShard(round % 2, (i) => member(server.port, `racer-${round}-${i}`));
      const since = round === 0 ? undefined : { offset: received.at(-1) ?? first, epoch };
      const { replayed, joined } = await join(sub, group, since);
      if (round === 0) {
        epoch = joined.epoch as string;
        first = joined.offset as number;
      } else {
        assert.equal(joined.recovered, true, `round ${round}`);
      }
      received.push(...replayed.map((m) => m.offset as number));
      assert.equal(received.at(-1) ?? first, joined.offset, `round ${round}: the replay ends at joined's offset`);
      // Some live messages, then a drop without goodbye while more are on their way.
      received.push(...(await nextMsgs(sub, 3 + (round % 5))).map((m) => m.offset as number));
      sub.ws.terminate();
    }
    publishing = false;
    await pump;
    const last = await member(server.port, 'racer-last');
    const final = await join(last, group, { offset: received.at(-1)!, epoch });
    received.push(...final.replayed.map((m) => m.offset as number));
    const top = final.joined.offset as number;
    assert.equal(final.joined.recovered, true);
    assert.deepEqual(received, Array.from({ length: top - first }, (_, i) => first + 1 + i), 'each offset once, in order, none missing');
    for (const p of publishers) p.close();
    last.close();
  });

  test('hostile names: a group called __proto__ keeps history like any other', async () => {
    const c = await member(server.port, '__proto__');
    const { joined } = await join(c, '__proto__');
    c.send({ op: 'pub', group: '__proto__', data: { __proto__: 1 }, ref: 'p' });
    const [msg] = await nextMsgs(c, 1);
    assert.equal(msg!.offset, (joined.offset as number) + 1);
    c.send({ op: 'history', group: '__proto__', ref: 'h' });
    const page = await c.next((f) => f.op === 'history');
    assert.equal((page.msgs as Frame[]).length, 1);
    c.send({ op: 'join', group: 'constructor', ref: 'k', since: { offset: 0, epoch: 'x' } });
    const plain = await c.next((f) => f.ref === 'k');
    assert.deepEqual(plain, { op: 'joined', group: 'constructor', ref: 'k' }, 'since is ignored where no history is kept');
    c.close();
  });

  test('a connection that closes with answers on their way costs nothing', async () => {
    for (let i = 0; i < 20; i++) {
      const c = await connect(server.port, { query: `user=flap${i}` });
      c.send({ op: 'join', group: 'room.flap', since: { offset: 0, epoch: 'x' } });
      c.send({ op: 'history', group: 'room.flap' });
      c.send({ op: 'leave', group: 'room.flap' });
      c.ws.terminate();
    }
    const c = await member(server.port, 'after-flap');
    const { joined } = await join(c, 'room.flap');
    assert.equal(joined.offset, 0);
    c.close();
  });
});

/**
 * Presence, history and recovery for `ocs.v1.msgpack` clients: every frame of them in binary,
 * with the fields the JSON form has, on a real 2-shard server. The server's codec pool takes
 * every frame here (codec_offload_threshold: 1), so a recovery's replay is turned binary in the
 * pool while the group's live messages race it: they must still come after it, once each.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { member, onShard, type Frame, type TestClient } from './helpers/client.js';
import { joinGroup as join, msgsOf, nextMsgs } from './helpers/history.js';
import { startInProcess } from './helpers/server.js';
import type { RunningServer } from '../src/index.js';

const msgpack = { encoding: 'msgpack' } as const;

/** Every frame `client` received so far came as a binary frame. */
function allBinary(client: TestClient): void {
  const text = client.arrivals.filter((a) => !a.binary);
  assert.deepEqual(text, [], 'a msgpack client gets binary frames only');
}

/** Chat-like data of about `bytes` bytes (repetitive, so LZ4 has something to take). */
const chat = (n: number, bytes: number): { n: number; text: string } => ({ n, text: `message ${n}: `.padEnd(bytes, 'hello there, ') });

describe('history, recovery and presence in ocs.v1.msgpack on a 2-shard server', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({
      websocket: {
        limits: { bad_frames_before_close: 100 },
        history: [{ pattern: 'room.*', size: 10_000, ttl: 0 }],
        presence: { window: 0.1 },
        performance: { codec_offload_threshold: 1, lz4_threshold: 1024 },
      },
    });
  });
  after(() => server.close());

  test('msgpack members get a history group\'s messages as binary frames with offset and epoch, JSON members as text; acks carry the offset', async () => {
    const m0 = await onShard(0, (i) => member(server.port, `m0-${i}`, [], msgpack));
    const m1 = await onShard(1, (i) => member(server.port, `m1-${i}`, [], msgpack));
    const j = await member(server.port, 'json-member');
    const joins = [await join(m0, 'room.mixed'), await join(m1, 'room.mixed'), await join(j, 'room.mixed')];
    const epoch = joins[0]!.joined.epoch as string;
    for (const { joined } of joins) assert.deepEqual([joined.offset, joined.epoch], [0, epoch]);
    for (let i = 0; i < 10; i++) (i % 2 === 0 ? m0 : j).send({ op: 'pub', group: 'room.mixed', data: chat(i, i === 4 ? 4000 : 50), ref: `p${i}` });
    let seen: Frame[] = [];
    for (const client of [m0, m1, j]) {
      const msgs = (seen = await nextMsgs(client, 10));
      assert.deepEqual(msgs.map((m) => [m.offset, m.epoch]), Array.from({ length: 10 }, (_, i) => [i + 1, epoch]));
      // The two publishers' messages interleave in the broker; each one's keep their order.
      const ns = msgs.map((m) => (m.data as { n: number }).n);
      assert.deepEqual([ns.filter((x) => x % 2 === 0), ns.filter((x) => x % 2 === 1)], [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]);
    }
    // Waited for, not read off the queue: an ack may still be in the codec pool when the last client's messages are in.
    const m0Acks: Frame[] = [];
    for (let i = 0; i < 5; i++) m0Acks.push(await m0.next((f) => f.op === 'ack'));
    const m0Offsets = seen.filter((m) => (m.data as { n: number }).n % 2 === 0).map((m) => m.offset);
    assert.deepEqual(m0Acks.map((a) => a.offset), m0Offsets, 'each ack has its message\'s offset');
    allBinary(m0);
    allBinary(m1);
    assert.ok(m0.arrivals.some((a) => a.op === 'msg' && a.compressed), 'the large message went out LZ4-compressed');
    assert.ok(j.arrivals.every((a) => !a.binary), 'a JSON member gets text frames only');
    for (const c of [m0, m1, j]) c.close();
  });

  test('a msgpack client recovers with since while another shard publishes: the replay and joined in binary, before every newer live message, none twice (20 rounds)', async () => {
    const publisher = await onShard(1, (i) => member(server.port, `race-pub${i}`, ['room.race']));
    let n = 0;
    const publish = (count: number, bytes: number): void => {
      for (let i = 0; i < count; i++) publisher.send({ op: 'pub', group: 'room.race', data: chat(n++, bytes) });
    };
    const first = await onShard(0, (i) => member(server.port, `racer${i}`, [], msgpack));
    const user = first.welcome.user as string;
    let { joined } = await join(first, 'room.race');
    let client: TestClient = first;
    let last = joined.offset as number;
    for (let round = 0; round < 20; round++) {
      publish(3, 100);
      last = ((await nextMsgs(client, 3)).at(-1)!.offset as number);
      client.close();
      await client.closed;
      // Missed while away: large enough that the replay is a compressed batch, made in the pool.
      publish(5, 3000);
      const back = await member(server.port, user, [], msgpack);
      const ref = `rejoin${round}`;
      back.send({ op: 'join', group: 'room.race', ref, since: { offset: last, epoch: joined.epoch } });
      // Racing the join: live messages published while the broker answers it.
      publish(5, 200);
      const received: Array<Frame & { afterJoined: boolean }> = [];
      let answer: Frame | null = null;
      while (answer === null || received.length < 10) {
        const frame = await back.next((f) => f.op === 'msg' || f.op === 'batch' || (f.op === 'joined' && f.ref === ref));
        if (frame.op === 'joined') answer = frame;
        else received.push(...msgsOf(frame).map((m) => ({ ...m, afterJoined: answer !== null })));
      }
      assert.ok(answer, 'joined came');
      assert.equal(answer.recovered, true, JSON.stringify(answer));
      assert.equal(answer.epoch, joined.epoch);
      const offsets = received.map((m) => m.offset as number);
      assert.deepEqual(offsets, Array.from({ length: 10 }, (_, i) => last + 1 + i), 'each message once, in order');
      const top = answer.offset as number;
      for (const m of received) assert.equal(m.afterJoined, (m.offset as number) > top, `offset ${String(m.offset)}: replayed before joined (top ${top}), live after`);
      allBinary(back);
      assert.ok(back.arrivals.some((a) => a.compressed), 'the large messages came LZ4-compressed');
      client = back;
      last += 10;
      joined = answer;
    }
    client.close();
    publisher.close();
  });

  test('a history page asked for while a msgpack client catches up holds back the live messages behind it: none overtakes an older one (20 rounds)', async () => {
    const publisher = await onShard(1, (i) => member(server.port, `page-pub${i}`, ['room.page']));
    let n = 0;
    const first = await onShard(0, (i) => member(server.port, `pager${i}`, [], msgpack));
    const user = first.welcome.user as string;
    let { joined } = await join(first, 'room.page');
    first.close();
    await first.closed;
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 5; i++) publisher.send({ op: 'pub', group: 'room.page', data: chat(n++, 3000) });
      const back = await member(server.port, user, [], msgpack);
      back.send({ op: 'join', group: 'room.page', ref: 'rejoin', since: { offset: joined.offset as number, epoch: joined.epoch } });
      // Live messages while the replay, then the page, are in the pool.
      let live = 0;
      const flow = (async () => {
        for (; live < 40; live++) {
          publisher.send({ op: 'pub', group: 'room.page', data: chat(n++, 20) });
          if (live === 2) back.send({ op: 'history', group: 'room.page', since: 0, limit: 50, ref: 'page' });
          await new Promise((r) => setImmediate(r));
        }
      })();
      await flow;
      const answer = await back.next((f) => f.op === 'joined' && f.ref === 'rejoin');
      await back.next((f) => f.op === 'history' && f.ref === 'page');
      const msgs: Frame[] = [];
      while (msgs.length < 45) msgs.push(...msgsOf(await back.next((f) => f.op === 'msg' || f.op === 'batch')));
      const offsets = msgs.map((m) => m.offset as number);
      assert.deepEqual(offsets, Array.from({ length: 45 }, (_, i) => (joined.offset as number) + 1 + i), `round ${round}: each message once, in order`);
      joined = { ...answer, offset: offsets.at(-1)! };
      back.close();
      await back.closed;
    }
    publisher.close();
  });

  test('history pages come as binary frames: msgs with their offsets, the top, the epoch and more', async () => {
    const writer = await member(server.port, 'pager-writer', ['room.pages']);
    for (let i = 0; i < 5; i++) writer.send({ op: 'pub', group: 'room.pages', data: chat(i, 40) });
    const sent = await nextMsgs(writer, 5);
    const reader = await member(server.port, 'pager', ['room.pages'], msgpack);
    reader.send({ op: 'history', group: 'room.pages', since: 1, limit: 3, ref: 'h' });
    const page = await reader.next((f) => f.ref === 'h');
    assert.equal(page.op, 'history');
    assert.deepEqual((page.msgs as Frame[]).map((m) => [m.offset, m.id, (m.data as { n: number }).n]), sent.slice(1, 4).map((m) => [m.offset, m.id, (m.data as { n: number }).n]));
    assert.deepEqual([page.offset, page.epoch, page.more], [5, sent[0]!.epoch, true]);
    allBinary(reader);
    for (const c of [writer, reader]) c.close();
  });

  test('bad since and history values from a msgpack client get E_BAD_FRAME in binary, with the ref', async () => {
    const c = await member(server.port, 'msgpack-bad', [], msgpack);
    for (const since of [null, 5, { offset: -1, epoch: 'e' }, { offset: 1.5, epoch: 'e' }, { offset: 1, epoch: 7 }, { offset: 1, epoch: 'x'.repeat(129) }, { offset: 2 ** 60, epoch: 'e' }]) {
      c.send({ op: 'join', group: 'room.bad', ref: 'bad', since });
      const err = await c.next((f) => f.ref === 'bad');
      assert.deepEqual([err.op, err.code], ['err', 'E_BAD_FRAME'], JSON.stringify(since));
    }
    c.send({ op: 'join', group: '__proto__', ref: 'proto', since: { offset: 0, epoch: 'e' } });
    assert.equal((await c.next((f) => f.ref === 'proto')).op, 'joined', 'a group without history: since ignored');
    c.send({ op: 'history', group: 'room.bad', ref: 'hist', limit: 0 });
    assert.equal((await c.next((f) => f.ref === 'hist')).code, 'E_BAD_FRAME');
    allBinary(c);
    c.close();
  });

  test('presence in msgpack: answers and events as binary frames; a JSON watcher gets text; members that do not watch get no events', async () => {
    const watcher = await onShard(0, (i) => member(server.port, `pwatch${i}`, [], msgpack));
    watcher.send({ op: 'join', group: 'lobby.p', presence: true, ref: 'w' });
    await watcher.next((f) => f.ref === 'w');
    const jsonWatcher = await onShard(1, (i) => member(server.port, `jwatch${i}`));
    jsonWatcher.send({ op: 'join', group: 'lobby.p', presence: true, ref: 'w' });
    await jsonWatcher.next((f) => f.ref === 'w');
    // A msgpack member that does not watch: its binary topic must not be the presence topic.
    const quiet = await onShard(1, (i) => member(server.port, `pquiet${i}`, ['lobby.p'], msgpack));
    const dave = await member(server.port, 'dave', ['lobby.p']);
    const joinsOf = async (client: TestClient, user: string): Promise<void> => {
      for (;;) {
        const event = await client.next((f) => f.op === 'presence' && f.ref === undefined, 3000);
        if ((event.joins as string[]).includes(user)) return;
      }
    };
    await joinsOf(watcher, 'dave');
    await joinsOf(jsonWatcher, 'dave');
    dave.send({ op: 'pub', group: 'lobby.p', data: 'hi' });
    for (const c of [watcher, jsonWatcher, quiet]) assert.equal((await c.next((f) => f.op === 'msg')).data, 'hi');
    const ask = async (counts: boolean): Promise<Frame> => {
      for (const until = Date.now() + 2000; ; ) {
        watcher.send({ op: 'presence', group: 'lobby.p', ref: 'q', counts });
        const answer = await watcher.next((f) => f.ref === 'q');
        if ((answer.total as { conns: number }).conns === 4 || Date.now() > until) return answer;
      }
    };
    const answer = await ask(false);
    assert.deepEqual(answer, {
      op: 'presence',
      group: 'lobby.p',
      ref: 'q',
      users: { [watcher.welcome.user as string]: 1, [jsonWatcher.welcome.user as string]: 1, [quiet.welcome.user as string]: 1, dave: 1 },
      total: { users: 4, conns: 4 },
    });
    assert.deepEqual(await ask(true), { op: 'presence', group: 'lobby.p', ref: 'q', total: { users: 4, conns: 4 } });
    dave.close();
    await leaveOf(watcher, 'dave');
    allBinary(watcher);
    allBinary(quiet);
    assert.equal(quiet.frames.filter((f) => f.op === 'presence').length, 0, 'no events to a member that does not watch');
    assert.ok(jsonWatcher.arrivals.every((a) => !a.binary), 'a JSON watcher gets no binary frame');
    assert.ok(jsonWatcher.arrivals.some((a) => a.op === 'presence'));
    for (const c of [watcher, jsonWatcher, quiet]) c.close();
  });
});

/** Waits for an event in which `user` leaves. */
async function leaveOf(client: TestClient, user: string): Promise<void> {
  for (;;) {
    const event = await client.next((f) => f.op === 'presence' && f.ref === undefined, 3000);
    if ((event.leaves as string[]).includes(user)) return;
  }
}

/**
 * ocs.v1.msgpack on a real two-shard server: every op in both encodings, compressed and not,
 * across shards, JSON and msgpack members in one group, send/any/batch in msgpack, large frames
 * and stored backlogs through the codec pool with their order kept.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { getJson, member, onShard, connect, type Frame, type TestClient } from './helpers/client.js';
import { nextMsgs, settle, until } from './helpers/messaging.js';
import { startInProcess } from './helpers/server.js';
import { signToken } from './helpers/tokens.js';
import type { RunningServer } from '../src/index.js';
import { deflateLz4 } from '../src/codec/lz4.js';
import { writeFrame } from '../src/protocol/msgpack-codec.js';

type Member = TestClient & { welcome: Frame };
const SECRET = 'msgpack-test-secret';

/** Chat-like text (words that repeat, as chat does): compresses the way real messages do. */
function chat(bytes: number, seed = 1): string {
  const words = ['deploy', 'the', 'build', 'failed', 'again', 'on', 'main', 'can', 'you', 'check', 'logs', 'ok', 'merged', 'thanks', 'review', 'please'];
  let text = '';
  for (let i = seed; text.length < bytes; i++) text += words[(i * 7 + (i >> 2)) % words.length] + (i % 11 === 0 ? '. ' : ' ');
  return text.slice(0, bytes);
}

async function totals(port: number): Promise<Record<string, number>> {
  return (await getJson(port, '/stats')).body.totals as Record<string, number>;
}

describe('ocs.v1.msgpack: every op, both encodings, one group, two shards', () => {
  let server: RunningServer;
  before(async () => {
    // The pool takes frames from 16 KiB here (64 KiB by default), so that the 40 KB pubs use it.
    server = await startInProcess({ websocket: { delivery: { ack_timeout: 0.3 }, performance: { codec_offload_threshold: 16384 } } });
  });
  after(() => server.close());

  test('a msgpack client gets every reply as a binary frame: welcome, joined, pong, msg, ack, left, err', async () => {
    const alice = await member(server.port, 'alice', ['room'], { encoding: 'msgpack' });
    assert.equal(alice.ws.protocol, 'ocs.v1.msgpack');
    alice.send({ op: 'ping', t: 42.5 });
    assert.equal((await alice.next((f) => f.op === 'pong')).t, 42.5);
    alice.send({ op: 'pub', group: 'room', data: { text: 'hi' }, ref: 'p1' });
    const msg = await alice.next((f) => f.op === 'msg');
    assert.deepEqual({ ...msg, id: '', ts: 0 }, { op: 'msg', id: '', from: 'alice', group: 'room', data: { text: 'hi' }, pri: 1, ts: 0 });
    assert.deepEqual(await alice.next((f) => f.op === 'ack'), { op: 'ack', ref: 'p1', id: msg.id });
    alice.send({ op: 'pub', group: 'elsewhere', data: 1, ref: 'p2' });
    assert.deepEqual({ ...(await alice.next((f) => f.op === 'err')), message: '' }, { op: 'err', code: 'E_NOT_MEMBER', message: '', ref: 'p2' });
    alice.send({ op: 'leave', group: 'room', ref: 'l1' });
    assert.deepEqual(await alice.next((f) => f.op === 'left'), { op: 'left', group: 'room', ref: 'l1' });
    assert.deepEqual(
      alice.arrivals.map((a) => [a.op, a.binary]),
      ['welcome', 'joined', 'pong', 'msg', 'ack', 'err', 'left'].map((op) => [op, true]),
    );
    alice.close();
  });

  test('JSON and msgpack members on both shards get each pub in their own encoding, the same message; 4 KB is LZ4-compressed for msgpack only', async () => {
    const members: Member[] = [];
    for (const shard of [0, 1]) {
      members.push(await onShard(shard, (i) => member(server.port, `json-${shard}-${i}`, ['mixed'])));
      members.push(await onShard(shard, (i) => member(server.port, `mp-${shard}-${i}`, ['mixed'], { encoding: 'msgpack' })));
    }
    const sizes = [10, 4096, 40_000]; // inline; inline with LZ4; decoded and encoded in the codec pool
    for (const publisher of [members[1]!, members[2]!]) {
      for (const size of sizes) {
        const data = { text: chat(size), n: size, nested: { ok: true, list: [1, 2.5, null] } };
        publisher.send({ op: 'pub', group: 'mixed', data, pri: 2, ref: `r${size}` });
        const ack = await publisher.next((f) => f.op === 'ack' && f.ref === `r${size}`);
        for (const m of members) {
          const msg = await m.next((f) => f.op === 'msg' && f.id === ack.id);
          assert.deepEqual({ ...msg, ts: 0 }, { op: 'msg', id: ack.id, from: publisher.welcome.user, group: 'mixed', data, pri: 2, ts: 0 });
          const arrival = m.arrivals.find((a) => a.op === 'msg' && a.id === ack.id)!;
          const binary = String(m.welcome.user).startsWith('mp-');
          assert.equal(arrival.binary, binary, `${m.welcome.user}: ${binary ? 'binary' : 'text'}`);
          assert.equal(arrival.compressed, binary && size >= 4096, `${m.welcome.user}, ${size} bytes: compressed only in msgpack, from lz4_threshold on`);
          if (arrival.compressed) assert.ok(arrival.bytes < size / 2, `${arrival.bytes} bytes on the wire for ${size} of text`);
        }
      }
    }
    const after = await totals(server.port);
    assert.ok(after.codec_offloaded! >= 2, 'the 40 KB pubs went through the pool');
    for (const m of members) m.close();
  });

  test('a compressed frame counts by what it inflates to: a 40 KB pub that crosses the wire as a few KB goes through the pool', async () => {
    const carol = await member(server.port, 'carol-lz4', ['big'], { encoding: 'msgpack' });
    const reader = await member(server.port, 'reader', ['big']);
    const frame = Buffer.from(writeFrame({ op: 'pub', group: 'big', data: chat(40_000), ref: 'big' }, deflateLz4, 0));
    assert.ok(frame.length < 16384, `the frame is ${frame.length} bytes on the wire, under the threshold as sent`);
    const before = (await totals(server.port)).codec_offloaded!;
    carol.sendRaw(frame);
    const ack = await carol.next((f) => f.op === 'ack' && f.ref === 'big');
    assert.equal((await reader.next((f) => f.op === 'msg' && f.id === ack.id)).data, chat(40_000));
    assert.equal((await totals(server.port)).codec_offloaded, before + 1);
    carol.close();
    reader.close();
  });

  test('a msgpack client may LZ4-compress what it sends: every op still works', async () => {
    const bob = await member(server.port, 'bob-lz4', ['z'], { encoding: 'msgpack', compressFrom: 0 });
    bob.send({ op: 'ping', t: 7 });
    await bob.next((f) => f.op === 'pong' && f.t === 7);
    bob.send({ op: 'pub', group: 'z', data: chat(2000), ref: 'c' });
    assert.equal((await bob.next((f) => f.op === 'msg')).data, chat(2000));
    bob.send({ op: 'send', to: 'bob-lz4', data: chat(300), ref: 's' });
    const [stored] = await nextMsgs(bob, 1);
    assert.equal(stored!.data, chat(300));
    bob.send({ op: 'ack', id: stored!.id });
    await settle(bob);
    bob.close();
  });

  test('send, any and ack in msgpack; the stored message reaches a JSON and a msgpack connection of the recipient alike', async () => {
    const dave = await member(server.port, 'dave', ['support'], { encoding: 'msgpack' });
    const daveJson = await member(server.port, 'dave');
    const erin = await member(server.port, 'erin', ['support'], { encoding: 'msgpack' });
    erin.send({ op: 'send', to: 'dave', data: { text: 'stored' }, pri: 3, ref: 's1' });
    const ack = await erin.next((f) => f.op === 'ack' && f.ref === 's1');
    for (const conn of [dave, daveJson]) {
      const [msg] = await nextMsgs(conn, 1);
      assert.deepEqual({ ...msg, ts: 0 }, { op: 'msg', id: ack.id, from: 'erin', data: { text: 'stored' }, pri: 3, ts: 0, ackReq: true });
    }
    dave.send({ op: 'ack', id: ack.id });
    dave.send({ op: 'ack', id: ack.id });
    const refused = await dave.next((f) => f.op === 'err');
    assert.deepEqual([refused.code, refused.id], ['E_UNKNOWN_ID', ack.id], 'the second ack of the same id, named in binary too');
    erin.send({ op: 'any', group: 'support', data: 'anyone?', strategy: 'round_robin', ref: 'a1' });
    const anyAck = await erin.next((f) => f.op === 'ack' && f.ref === 'a1');
    const [got] = await Promise.race([nextMsgs(dave, 1), nextMsgs(erin, 1)]);
    assert.deepEqual({ ...got, ts: 0 }, { op: 'msg', id: anyAck.id, from: 'erin', group: 'support', data: 'anyone?', pri: 1, ts: 0, ackReq: true });
    for (const c of [dave, daveJson, erin]) c.close();
  });

  test('a group message made by a processor (the broker publishes it) reaches msgpack members too', async () => {
    server.registerProcessor('shout', (m) => ({ ...m, data: { type: 'shout', text: String((m.data as { text: string }).text).toUpperCase() } }));
    const json = await member(server.port, 'p-json', ['loud']);
    const mp = await member(server.port, 'p-mp', ['loud'], { encoding: 'msgpack' });
    mp.send({ op: 'pub', group: 'loud', data: { type: 'shout', text: 'quiet' } });
    for (const c of [json, mp]) assert.deepEqual((await c.next((f) => f.op === 'msg')).data, { type: 'shout', text: 'QUIET' });
    assert.equal(mp.arrivals.find((a) => a.op === 'msg')!.binary, true);
    json.close();
    mp.close();
  });
});

describe('ocs.v1.msgpack: a pub whose JSON form is several times its own size, across shards', () => {
  let server: RunningServer;
  before(async () => {
    // ring_bytes stays the default 4 MiB, 4 x max_payload: the least config allows.
    server = await startInProcess({ websocket: { server: { shards: 2, max_payload: 1024 * 1024 } } });
  });
  after(() => server.close());

  test('400 KB of control characters (2.4 MB as JSON, more than a ring record takes) reaches the JSON and msgpack members of the other shard', async () => {
    const publisher = await onShard(0, (i) => member(server.port, `big-pub${i}`, ['big'], { encoding: 'msgpack' }));
    const json = await onShard(1, (i) => member(server.port, `big-json${i}`, ['big']));
    const mp = await onShard(1, (i) => member(server.port, `big-mp${i}`, ['big'], { encoding: 'msgpack' }));
    const data = '\u0001'.repeat(400_000);
    publisher.send({ op: 'pub', group: 'big', data, ref: 'big' });
    assert.equal((await publisher.next((f) => f.ref === 'big')).op, 'ack');
    for (const client of [json, mp]) assert.equal((await client.next((f) => f.op === 'msg', 10_000)).data, data);
    for (const client of [publisher, json, mp]) client.close();
  });
});

describe('ocs.v1.msgpack: LZ4 high compression for a group message to many members of a shard', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { server: { shards: 1 }, performance: { lz4_hc_min_recipients: 3 } } });
  });
  after(() => server.close());

  test('from lz4_hc_min_recipients msgpack members on, the frame is smaller than lz4-napi makes it, and decodes the same', async () => {
    const data = { text: chat(4096, 3) };
    const sizes: number[] = [];
    for (const [group, count] of [['few', 2], ['many', 3]] as const) {
      const members: Member[] = [];
      for (let i = 0; i < count; i++) members.push(await member(server.port, `${group}-${i}`, [group], { encoding: 'msgpack' }));
      members[0]!.send({ op: 'pub', group, data, ref: 'r' });
      const ack = await members[0]!.next((f) => f.op === 'ack' && f.ref === 'r');
      for (const m of members) {
        assert.deepEqual((await m.next((f) => f.op === 'msg' && f.id === ack.id)).data, data);
        const arrival = m.arrivals.find((a) => a.op === 'msg' && a.id === ack.id)!;
        assert.ok(arrival.compressed);
        sizes.push(arrival.bytes);
      }
      for (const m of members) m.close();
    }
    // The two groups' messages differ only in the group's name and id; HC saves far more.
    assert.ok(sizes[2]! + 50 < sizes[0]!, `to 3: ${sizes[2]} bytes; to 2: ${sizes[0]}`);
  });
});

describe('ocs.v1.msgpack with tokens', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { auth: { secret: SECRET } } });
  });
  after(() => server.close());

  test('auth as the first frame, and a later auth that refreshes the token, in msgpack', async () => {
    const client = await connect(server.port, { encoding: 'msgpack' });
    client.send({ op: 'auth', token: await signToken({}, { sub: 'carol', secret: SECRET }), ref: 'a1' });
    const welcome = await client.next((f) => f.op === 'welcome');
    assert.equal(welcome.user, 'carol');
    assert.equal(typeof welcome.expiresAt, 'number');
    client.send({ op: 'auth', token: await signToken({}, { sub: 'carol', secret: SECRET, exp: '2h' }), ref: 'a2' });
    const ack = await client.next((f) => f.op === 'ack');
    assert.equal(ack.ref, 'a2');
    assert.ok((ack.expiresAt as number) > (welcome.expiresAt as number));
    client.close();
  });

  test('frames sent right behind auth wait for the welcome; one over max_payload among them is refused after those before it', async () => {
    const client = await connect(server.port, { encoding: 'msgpack' });
    client.send({ op: 'auth', token: await signToken({}, { sub: 'dave', secret: SECRET }), ref: 'a1' });
    for (let t = 0; t < 3; t++) client.send({ op: 'ping', t });
    client.sendRaw(Buffer.alloc(64 * 1024 + 100));
    assert.equal((await client.closed).code, 1009);
    assert.deepEqual(
      client.frames.map((f) => `${String(f.op)} ${String(f.t ?? f.code ?? '')}`),
      ['welcome ', 'pong 0', 'pong 1', 'pong 2', 'err E_TOO_LARGE'],
    );
  });
});

describe('order per connection when frames go through the codec pool', () => {
  /** The pool on (its default), limited to one task in flight (so some large work runs inline beside it), and off. */
  const variants: Array<[string, Record<string, unknown>]> = [
    ['the codec pool', {}],
    ['a pool that holds one task at a time (the rest inline)', { codec_queue_limit: 1 }],
    ['no pool (codec_pool_size 0)', { codec_pool_size: 0 }],
  ];
  for (const [name, performance] of variants) {
    describe(name, () => {
      let server: RunningServer;
      before(async () => {
        server = await startInProcess({ websocket: { performance: { batch_size: 20, codec_offload_threshold: 16384, ...performance } } });
      });
      after(() => server.close());

      test('large and small pubs of one msgpack publisher arrive in the order sent, with their acks in order', async () => {
        const sub = await member(server.port, 'sub', ['o'], { encoding: 'msgpack' });
        const subJson = await member(server.port, 'sub-json', ['o']);
        const pub = await member(server.port, 'pub', ['o'], { encoding: 'msgpack' });
        const sent = Array.from({ length: 12 }, (_, i) => (i % 3 === 0 ? chat(30_000, i) : `small ${i}`));
        sent.forEach((data, i) => pub.send({ op: 'pub', group: 'o', data, ref: `r${i}` }));
        for (const client of [sub, subJson, pub]) {
          const got: unknown[] = [];
          while (got.length < sent.length) got.push((await client.next((f) => f.op === 'msg')).data);
          assert.deepEqual(got, sent);
        }
        const acks: unknown[] = [];
        while (acks.length < sent.length) acks.push((await pub.next((f) => f.op === 'ack')).ref);
        assert.deepEqual(acks, sent.map((_, i) => `r${i}`));
        for (const c of [sub, subJson, pub]) c.close();
      });

      if (performance.codec_queue_limit === undefined) {
        test('a client that pipelines 40 large pubs (2.4 MB at once) keeps the pool busy, is not closed, and they arrive in order', async () => {
          const sub = await member(server.port, 'pipe-sub', ['pipe'], { encoding: 'msgpack' });
          const pub = await member(server.port, 'pipe-pub', ['pipe'], { encoding: 'msgpack' });
          const sent = Array.from({ length: 40 }, (_, i) => chat(60_000, i));
          sent.forEach((data) => pub.send({ op: 'pub', group: 'pipe', data }));
          const got: unknown[] = [];
          while (got.length < sent.length) got.push((await sub.next((f) => f.op === 'msg', 20_000)).data);
          assert.deepEqual(got, sent);
          await settle(pub);
          for (const c of [sub, pub]) c.close();
        });
      }

      test('a frame over max_payload is refused in its turn: the frames sent before it, one in the pool, are handled and answered first', async () => {
        const sub = await member(server.port, 'big-sub', ['big'], { encoding: 'msgpack' });
        const pub = await member(server.port, 'big-pub', ['big'], { encoding: 'msgpack' });
        const large = chat(60_000, 3);
        pub.send({ op: 'pub', group: 'big', data: large, ref: 'large' });
        pub.send({ op: 'pub', group: 'big', data: 'small', ref: 'small' });
        pub.send({ op: 'ping', t: 7 });
        pub.sendRaw(Buffer.alloc(64 * 1024 + 100));
        pub.send({ op: 'pub', group: 'big', data: 'after', ref: 'after' });
        assert.equal((await pub.closed).code, 1009);
        const replies = pub.frames.map((f) => (f.op === 'msg' ? `msg ${f.data === large ? 'large' : String(f.data)}` : `${String(f.op)} ${String(f.ref ?? f.t ?? f.code)}`));
        assert.deepEqual(replies.slice(-6), ['msg large', 'ack large', 'msg small', 'ack small', 'pong 7', 'err E_TOO_LARGE']);
        assert.deepEqual((await nextMsgs(sub, 2)).map((f) => f.data), [large, 'small']);
        await settle(sub);
        assert.deepEqual(sub.frames.filter((f) => f.op === 'msg'), [], 'nothing sent after the refused frame is handled');
        sub.close();
      });

      test('while its stored messages are in the pool, a msgpack client gets pong, joined, its own pub and the ack in the order of its frames, and nothing of a group before its joined', async () => {
        const sender = await member(server.port, 'order-sender');
        const client = await member(server.port, 'order-client', ['mine'], { encoding: 'msgpack' });
        const other = await member(server.port, 'order-other', ['theirs']);
        for (let i = 0; i < 20; i++) {
          sender.send({ op: 'send', to: 'order-client', data: chat(20_000, i), ref: `s${i}` });
          await sender.next((f) => f.ref === `s${i}`);
        }
        client.send({ op: 'ping', t: 1 });
        client.send({ op: 'join', group: 'theirs', ref: 'j' });
        other.send({ op: 'pub', group: 'theirs', data: 'theirs' });
        client.send({ op: 'pub', group: 'mine', data: 'own', ref: 'p' });
        await until(async () => (client.frames.some((f) => f.ref === 'p') ? true : undefined), 'the ack of the pub', 20_000);
        const order = client.frames.filter((f) => f.op !== 'msg' || f.data === 'own' || f.data === 'theirs').map((f) => (f.op === 'msg' ? `msg ${f.data as string}` : f.op));
        const at = (what: string) => order.indexOf(what);
        assert.ok(at('pong') < at('joined') && at('joined') < at('msg own') && at('msg own') < at('ack'), order.join(', '));
        if (at('msg theirs') >= 0) assert.ok(at('msg theirs') > at('joined'), order.join(', '));
        for (const m of await nextMsgs(client, 20, 20_000)) client.send({ op: 'ack', id: m.id });
        await settle(client);
        for (const c of [sender, client, other]) c.close();
      });

      test('a reconnecting msgpack user gets welcome first, then a large stored backlog as compressed batches, in order', async () => {
        const sender = await member(server.port, 'backlog-sender');
        const count = 90;
        for (let i = 0; i < count; i++) sender.send({ op: 'send', to: 'returning', data: { i, text: chat(1500, i) }, ref: `s${i}` });
        for (let i = 0; i < count; i++) await sender.next((f) => f.op === 'ack' && f.ref === `s${i}`);
        const before = await totals(server.port);
        const back = await member(server.port, 'returning', [], { encoding: 'msgpack' });
        assert.equal(back.welcome.pending, count);
        const msgs = await nextMsgs(back, count, 20_000);
        assert.deepEqual(msgs.map((m) => (m.data as { i: number }).i), Array.from({ length: count }, (_, i) => i));
        assert.equal(back.arrivals[0]!.op, 'welcome');
        const batches = back.arrivals.filter((a) => a.op === 'batch');
        assert.ok(batches.length >= 4 && batches.every((a) => a.binary && a.compressed), JSON.stringify(batches));
        const afterwards = await until(async () => {
          const t = await totals(server.port);
          return t.deliveries! - before.deliveries! >= batches.length ? t : undefined;
        }, 'deliveries counted');
        if (performance.codec_pool_size === 0) assert.equal(afterwards.codec_offloaded, before.codec_offloaded);
        else assert.ok(afterwards.codec_offloaded! > before.codec_offloaded!, 'batches went through the pool');
        assert.ok(afterwards.bytes_out! - before.bytes_out! < count * 1500, 'bytes_out counts the compressed bytes that went out');
        for (const m of msgs) back.send({ op: 'ack', id: m.id });
        await settle(back);
        back.close();
        sender.close();
      });
    });
  }
});

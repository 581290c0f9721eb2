import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, member, type Frame, type TestClient } from './helpers/client.js';
import { nextMsgs, settle } from './helpers/messaging.js';
import { startInProcess } from './helpers/server.js';
import { signToken } from './helpers/tokens.js';
import type { RunningServer } from '../src/index.js';

/** Sends `count` anys to `group` from `sender`, waiting for each ack. */
async function anys(sender: TestClient, group: string, count: number, extra: Record<string, unknown> = {}): Promise<void> {
  for (let i = 0; i < count; i++) {
    sender.send({ op: 'any', group, data: i, ref: `${group}-${i}`, ...extra });
    await sender.next((f) => f.op === 'ack' && f.ref === `${group}-${i}`);
  }
}

/** How many msgs each client received (acking them), once `total` have arrived in all. */
async function tally(clients: TestClient[], total: number): Promise<number[]> {
  const counts = clients.map(() => 0);
  let seen = 0;
  while (seen < total) {
    for (const [i, client] of clients.entries()) {
      await settle(client);
      for (let index = client.frames.findIndex((f) => f.op === 'msg'); index >= 0; index = client.frames.findIndex((f) => f.op === 'msg')) {
        const [msg] = client.frames.splice(index, 1);
        counts[i]!++;
        seen++;
        client.send({ op: 'ack', id: msg!.id });
      }
    }
  }
  return counts;
}

describe('any: exactly one online member gets each message', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({
      websocket: {
        // A secret beside anonymous mode: anonymous members are anon:NAME (the claimed one is not).
        auth: { secret: 'any-secret', allow_anonymous: true, anonymous_groups: ['*'] },
        groups: { require_membership: false },
        delivery: { ack_timeout: 1, weights: { 'anon:heavy': 3 }, group_strategies: { lc: 'least_connections' } },
      },
    });
  });
  after(() => server.close());

  test('round_robin (the default) alternates members; the msg names the group and asks for an ack', async () => {
    const a = await member(server.port, 'rr-a', ['rr']);
    const b = await member(server.port, 'rr-b', ['rr']);
    const sender = await member(server.port, 'rr-sender');
    sender.send({ op: 'any', group: 'rr', data: 'first', ref: 'first' });
    const ack = await sender.next((f) => f.op === 'ack');
    await settle(a);
    await settle(b);
    const msg = [...a.frames, ...b.frames].find((f) => f.op === 'msg')!;
    assert.deepEqual({ ...msg, ts: 0 }, { op: 'msg', id: ack.id, from: 'anon:rr-sender', group: 'rr', data: 'first', pri: 1, ts: 0, ackReq: true });
    const first = await tally([a, b], 1);
    assert.equal(first[0]! + first[1]!, 1, 'exactly one member got it');
    await anys(sender, 'rr', 6);
    assert.deepEqual(await tally([a, b], 6), [3, 3]);
    for (const c of [a, b, sender]) c.close();
  });

  test('least_connections (set per group in config) picks the member with the fewest deliveries awaiting ack', async () => {
    const busy = await member(server.port, 'lc-busy', ['lc']);
    const idle = await member(server.port, 'lc-idle', ['lc']);
    const sender = await member(server.port, 'lc-sender');
    await server.send('anon:lc-busy', 'unacked work');
    await nextMsgs(busy, 1); // busy now holds one delivery it has not acknowledged
    for (let i = 0; i < 3; i++) {
      sender.send({ op: 'any', group: 'lc', data: i, ref: `lc${i}` });
      await sender.next((f) => f.op === 'ack' && f.ref === `lc${i}`);
      const [msg] = await nextMsgs(idle, 1);
      assert.equal(msg!.data, i);
      idle.send({ op: 'ack', id: msg!.id });
      await settle(idle);
    }
    await settle(busy);
    assert.equal(busy.frames.filter((f) => f.op === 'msg').length, 0, 'the busy member got none');
    for (const c of [busy, idle, sender]) c.close();
  });

  test('a strategy in the frame overrides the group default', async () => {
    const a = await member(server.port, 'ov-a', ['ov']);
    const b = await member(server.port, 'ov-b', ['ov']);
    await server.send('anon:ov-a', 'pending');
    await nextMsgs(a, 1);
    for (let i = 0; i < 3; i++) {
      b.send({ op: 'any', group: 'ov', data: i, strategy: 'least_connections', ref: `ov${i}` });
      await b.next((f) => f.op === 'ack' && f.ref === `ov${i}`);
      const [msg] = await nextMsgs(b, 1);
      b.send({ op: 'ack', id: msg!.id });
      await settle(b);
    }
    await settle(a);
    assert.equal(a.frames.filter((f) => f.op === 'msg').length, 0);
    a.close();
    b.close();
  });

  test('weighted (set through the embedding API) shares by weight from the token claim, else config, else 1', async () => {
    server.setGroupLoadBalanceStrategy('w', 'weighted');
    const token = await signToken({ weight: 2 }, { sub: 'claimed', secret: 'any-secret' });
    const claimed = await connect(server.port, { query: `token=${token}` });
    await claimed.next((f) => f.op === 'welcome');
    claimed.send({ op: 'join', group: 'w' });
    await claimed.next((f) => f.op === 'joined');
    const heavy = await member(server.port, 'heavy', ['w']); // 3, from delivery.weights
    const light = await member(server.port, 'light', ['w']); // 1
    const sender = await member(server.port, 'w-sender');
    await anys(sender, 'w', 12);
    assert.deepEqual(await tally([claimed, heavy, light], 12), [4, 6, 2]);
    for (const c of [claimed, heavy, light, sender]) c.close();
  });

  test('with no member online the message is stored for the group and delivered when one joins', async () => {
    const sender = await member(server.port, 'late-sender');
    sender.send({ op: 'any', group: 'empty-room', data: 'kept', ref: 'k' });
    const ack = await sender.next((f) => f.op === 'ack');
    const joiner = await member(server.port, 'joiner', ['empty-room']);
    const [msg] = await nextMsgs(joiner, 1);
    assert.equal(msg!.id, ack.id);
    assert.equal(msg!.data, 'kept');
    assert.equal(msg!.group, 'empty-room');
    joiner.send({ op: 'ack', id: msg!.id });
    await settle(joiner);
    joiner.close();
    sender.close();
  });

  test('an unacknowledged any goes to another member when its holder left', async () => {
    const first = await member(server.port, 'leaver', ['relay']);
    const sender = await member(server.port, 'relay-sender');
    sender.send({ op: 'any', group: 'relay', data: 'hot potato', ref: 'hp' });
    const ack = await sender.next((f) => f.op === 'ack');
    await nextMsgs(first, 1);
    first.close(); // without acking
    await first.closed;
    const second = await member(server.port, 'stayer', ['relay']);
    const [msg] = await nextMsgs(second, 1, 15_000); // after ack_timeout
    assert.equal(msg!.id, ack.id);
    second.send({ op: 'ack', id: msg!.id });
    second.close();
    sender.close();
  });
});

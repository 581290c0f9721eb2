import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { member, type Frame, type TestClient } from './helpers/client.js';
import { until } from './helpers/messaging.js';
import { nextOpen, sdkClient } from './helpers/sdk.js';
import { startInProcess } from './helpers/server.js';
import { tcpProxy } from './helpers/tcp-proxy.js';
import type { RunningServer } from '../src/index.js';

/**
 * A `history` frame of 40 bytes, or a member's `join` with `since`, is answered with up to
 * history.max_replay_bytes (256 KiB): four connections asking at the default frame rate took
 * 92-102 MB/s of answers from the server and another user's send from 3 to 36-38 ms at P50 (a
 * review, 2026-12-08). What the broker answers one connection is now bounded in bytes a second.
 */
describe('what a connection is answered by the broker is bounded in bytes', () => {
  let server: RunningServer;
  let epoch = '';
  const REPLAY_BYTES = 256 * 1024;
  before(async () => {
    server = await startInProcess({
      websocket: { server: { shards: 1 }, history: [{ pattern: 'h.*', size: 1000, ttl: 3600 }] },
      history: { max_replay_bytes: REPLAY_BYTES },
    });
    const publisher = await member(server.port, 'publisher', ['h.1']);
    // 100 messages of 2.5 KB: a page of 250 KB, within max_replay_bytes.
    for (let i = 0; i < 100; i++) publisher.send({ op: 'pub', group: 'h.1', data: 'y'.repeat(2500), ref: `p${i}` });
    const last = await publisher.next((f) => f.ref === 'p99', 10_000);
    assert.equal(last.op, 'ack');
    publisher.send({ op: 'join', group: 'h.1', ref: 'epoch' });
    epoch = (await publisher.next((f) => f.ref === 'epoch')).epoch as string;
    publisher.close();
  });
  after(() => server.close());

  /** Sends `frames` at once and sorts the answers (by ref) into answered and refused. */
  async function ask(client: TestClient, frames: Array<Record<string, unknown>>, answered: (f: Frame) => boolean): Promise<{ answered: number; refused: Frame[] }> {
    for (const frame of frames) client.send(frame);
    let ok = 0;
    const refused: Frame[] = [];
    for (const { ref } of frames) {
      const reply = await client.next((f) => f.ref === ref, 20_000);
      if (reply.op === 'err') refused.push(reply);
      else if (answered(reply)) ok++;
    }
    return { answered: ok, refused };
  }

  test('history pages past the budget are refused E_RATE_LIMITED, and answered again once it refilled', async (context) => {
    const reader = await member(server.port, 'reader', ['h.1']);
    const frames = Array.from({ length: 40 }, (_, i) => ({ op: 'history', group: 'h.1', since: 0, ref: `h${i}` }));
    const { answered, refused } = await ask(reader, frames, (f) => f.op === 'history' && (f.msgs as unknown[]).length > 90);
    // 40 pages of 250 KB were all answered before: 10 MB for 40 frames.
    context.diagnostic(`${answered} of 40 pages answered, ${refused.length} refused`);
    assert.ok(answered <= 10, `${answered} of 40 pages of 250 KB answered at once`);
    assert.equal(answered + refused.length, 40);
    assert.ok(refused.every((f) => f.code === 'E_RATE_LIMITED'), JSON.stringify(refused[0]));
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const again = await ask(reader, [{ op: 'history', group: 'h.1', since: 0, ref: 'later' }], (f) => f.op === 'history');
    assert.equal(again.answered, 1, 'answered once the budget refilled');
    reader.close();
  });

  test('recovering joins past the budget are refused E_RATE_LIMITED, and the connection stays a member', async (context) => {
    const joiner = await member(server.port, 'joiner', ['h.1']);
    const frames = Array.from({ length: 40 }, (_, i) => ({ op: 'join', group: 'h.1', since: { offset: 50, epoch }, ref: `j${i}` }));
    const { answered, refused } = await ask(joiner, frames, (f) => f.op === 'joined' && f.recovered === true);
    context.diagnostic(`${answered} of 40 replays sent, ${refused.length} refused`);
    assert.ok(answered <= 10, `${answered} of 40 replays of 130 KB sent at once`);
    assert.equal(answered + refused.length, 40);
    assert.ok(refused.every((f) => f.code === 'E_RATE_LIMITED'), JSON.stringify(refused[0]));
    joiner.send({ op: 'presence', group: 'h.1', ref: 'still' });
    await new Promise((resolve) => setTimeout(resolve, 2000));
    joiner.send({ op: 'presence', group: 'h.1', ref: 'member' });
    assert.equal((await joiner.next((f) => f.ref === 'member')).op, 'presence', 'still a member');
    joiner.close();
  });
});

describe('an SDK client recovering more than a second of answers', () => {
  test('its refused re-joins are retried: every message missed in eight groups once, in order, no gap', async (context) => {
    // 64 KiB replays, so 256 KiB of answers a second; eight groups each miss about 50 KB: 400 KB to recover.
    const server = await startInProcess({
      websocket: { server: { shards: 1 }, history: [{ pattern: 'r.*', size: 1000, ttl: 3600 }], limits: { messages_per_second: 10_000 } },
      history: { max_replay_bytes: 64 * 1024 },
    });
    const groups = Array.from({ length: 8 }, (_, i) => `r.${i}`);
    const proxy = await tcpProxy(server.port);
    // The SDK draws a random jitter for each refused join it will send again (and for each reconnect).
    let draws = 0;
    const random = (): number => (draws++, Math.random());
    const rx = sdkClient(proxy.port, { user: 'recovering', reconnect: { initialMs: 50, soonMs: 50, maxMs: 500 }, random });
    const errors: unknown[] = [];
    rx.client.on('error', (e) => errors.push(e));
    await rx.client.connect();
    for (const group of groups) await rx.client.join(group);
    const publisher = await member(server.port, 'pub', groups);
    proxy.freeze = true;
    const PER_GROUP = 30;
    for (const group of groups) {
      for (let seq = 1; seq <= PER_GROUP; seq++) publisher.send({ op: 'pub', group, data: { seq, text: 'z'.repeat(1500) }, ref: `${group}/${seq}` });
    }
    const last = await publisher.next((f) => f.ref === `${groups.at(-1)}/${PER_GROUP}`, 10_000);
    assert.equal(last.op, 'ack', JSON.stringify(last));
    const reopened = nextOpen(rx.client);
    proxy.freeze = false;
    proxy.cut();
    await reopened;
    const drawsBefore = draws;
    const seqsOf = (group: string): number[] => rx.messages.filter((m) => m.group === group).map((m) => (m.data as { seq: number }).seq);
    await until(() => (groups.every((g) => seqsOf(g).length >= PER_GROUP) ? true : undefined), 'every group recovered', 20_000);
    context.diagnostic(`re-joins refused and sent again: ${draws - drawsBefore}`);
    assert.ok(draws > drawsBefore, 'some re-joins were refused for the budget (else this test shows nothing)');
    assert.deepEqual(errors, []);
    for (const group of groups) assert.deepEqual(seqsOf(group), Array.from({ length: PER_GROUP }, (_, i) => i + 1), group);
    assert.deepEqual(rx.gaps, []);
    publisher.close();
    await rx.client.close();
    await proxy.close();
    await server.close();
  });
});

/**
 * The answer budget of test/answer-budget.test.ts in cluster mode: a node answers `history`
 * pages and joins with `since` from Redis, each up to history.max_replay_bytes (256 KiB), and
 * one connection's pipelined frames must neither take that from the node at the frame rate nor
 * make Redis read it: past the budget they are refused E_RATE_LIMITED before Redis is asked.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { member, type Frame, type TestClient } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { RESERVED_SHARE } from '../src/broker/answer-budget.js';
import { announceSkip, nodeConfig } from './helpers/redis.js';
import { until } from './helpers/messaging.js';
import { commandsDuring } from './helpers/script-work.js';
import { nextOpen, sdkClient } from './helpers/sdk.js';
import { tcpProxy } from './helpers/tcp-proxy.js';

const skip = announceSkip('cluster-answer-budget.test');
const REPLAY_BYTES = 256 * 1024;

function config(redisUrl: string): Record<string, unknown> {
  const node = nodeConfig(redisUrl, 'ab:', 1, { websocket: { history: [{ pattern: 'h.*', size: 1000, ttl: 3600 }] } });
  node.history = { ...(node.history as object), max_replay_bytes: REPLAY_BYTES };
  return node;
}

interface Asked {
  answered: number;
  refused: Frame[];
  /** Scripts Redis ran on the group meanwhile. */
  scripts: number;
  ms: number;
}

/**
 * Sends `frames` at once and sorts the answers (by ref) into answered and refused, with the
 * scripts Redis at `url` ran on `group` meanwhile.
 */
async function ask(url: string, group: string, client: TestClient, frames: Array<Record<string, unknown>>, answered: (f: Frame) => boolean): Promise<Asked> {
  let ok = 0;
  const refused: Frame[] = [];
  const started = performance.now();
  const commands = await commandsDuring(url, async () => {
    for (const frame of frames) client.send(frame);
    for (const { ref } of frames) {
      const reply = await client.next((f) => f.ref === ref, 20_000);
      if (reply.op === 'err') refused.push(reply);
      else if (answered(reply)) ok++;
    }
  });
  const scripts = commands.filter(([name, ...args]) => name!.startsWith('EVAL') && args.includes(group)).length;
  return { answered: ok, refused, scripts, ms: performance.now() - started };
}

/**
 * Of 40 frames, at most the RESERVED_SHARE on their way at once were answered (those sent
 * the budget into debt), and as many more as the budget's refill paid for while they were
 * answered; Redis was asked for no answer that did not go, and the rest were refused E_RATE_LIMITED.
 */
function bounded({ answered, refused, scripts, ms }: Asked, capacity: number, bytesEach: number, what: string): void {
  assert.ok(answered <= RESERVED_SHARE + Math.ceil((capacity * ms) / 1000 / bytesEach), `${answered} of 40 ${what} answered in ${ms.toFixed(0)} ms`);
  assert.ok(scripts <= answered + 1, `Redis read ${scripts} ${what} for 40 frames, ${answered} answered`);
  assert.equal(answered + refused.length, 40);
  assert.ok(refused.every((f) => f.code === 'E_RATE_LIMITED'), JSON.stringify(refused[0]));
}

describe('what a node answers one connection from Redis is bounded in bytes', { skip }, () => {
  const cluster = clusterFixture({ nodes: [{ config }] });
  const { nodes, open } = cluster;
  let epoch = '';

  async function on(user: string, groups: string[]): Promise<TestClient> {
    const client = await member(nodes[0]!.port, user, groups);
    open.push(client);
    return client;
  }

  test('a group of 100 messages of 2.5 KB', async () => {
    const publisher = await on('publisher', ['h.1']);
    for (let i = 0; i < 100; i++) publisher.send({ op: 'pub', group: 'h.1', data: 'y'.repeat(2500), ref: `p${i}` });
    assert.equal((await publisher.next((f) => f.ref === 'p99', 10_000)).op, 'ack');
    publisher.send({ op: 'join', group: 'h.1', ref: 'epoch' });
    epoch = (await publisher.next((f) => f.ref === 'epoch')).epoch as string;
  });

  test('history pages past the budget are refused E_RATE_LIMITED without asking Redis, and answered again once it refilled', async (context) => {
    const reader = await on('reader', ['h.1']);
    const frames = Array.from({ length: 40 }, (_, i) => ({ op: 'history', group: 'h.1', since: 0, ref: `h${i}` }));
    const pages = await ask(cluster.redis.url, 'h.1', reader, frames, (f) => f.op === 'history' && (f.msgs as unknown[]).length > 90);
    context.diagnostic(`${pages.answered} of 40 pages answered, ${pages.refused.length} refused, ${pages.scripts} scripts on h.1, ${pages.ms.toFixed(0)} ms`);
    bounded(pages, 4 * REPLAY_BYTES, 250_000, 'pages of 250 KB');
    // What went beyond the budget is a debt, repaid by its refill: as long as those bytes take at 1 MiB a second.
    await new Promise((resolve) => setTimeout(resolve, (1000 * pages.answered * 250_000) / (4 * REPLAY_BYTES)));
    const again = await ask(cluster.redis.url, 'h.1', reader, [{ op: 'history', group: 'h.1', since: 0, ref: 'later' }], (f) => f.op === 'history');
    assert.equal(again.answered, 1, 'answered once the budget refilled');
  });

  test('small pages asked at once are answered, sixteen of them, whatever the most a page may be', async () => {
    const browser = await on('browser', ['h.1']);
    // 16 pages of two 2.5 KB messages: 80 KB, well within the 1 MiB a second, but each might have been 256 KiB.
    const frames = Array.from({ length: 16 }, (_, i) => ({ op: 'history', group: 'h.1', since: 2 * i, limit: 2, ref: `s${i}` }));
    const pages = await ask(cluster.redis.url, 'h.1', browser, frames, (f) => f.op === 'history' && (f.msgs as unknown[]).length === 2);
    assert.deepEqual(pages.refused, []);
    assert.equal(pages.answered, 16);
  });

  test('recovering joins past the budget are refused E_RATE_LIMITED without asking Redis, and the connection stays a member', async (context) => {
    const joiner = await on('joiner', ['h.1']);
    const frames = Array.from({ length: 40 }, (_, i) => ({ op: 'join', group: 'h.1', since: { offset: 50, epoch }, ref: `j${i}` }));
    const replays = await ask(cluster.redis.url, 'h.1', joiner, frames, (f) => f.op === 'joined' && f.recovered === true);
    context.diagnostic(`${replays.answered} of 40 replays sent, ${replays.refused.length} refused, ${replays.scripts} scripts on h.1, ${replays.ms.toFixed(0)} ms`);
    bounded(replays, 4 * REPLAY_BYTES, 125_000, 'replays of 125 KB');
    await new Promise((resolve) => setTimeout(resolve, 2000));
    joiner.send({ op: 'presence', group: 'h.1', ref: 'member' });
    assert.equal((await joiner.next((f) => f.ref === 'member')).op, 'presence', 'still a member');
  });
});

describe('an SDK client recovering many groups on a node', { skip }, () => {
  const cluster = clusterFixture({ nodes: [{ config }] });

  test('its re-joins, answered one at a time, spend what they replay, not the most: none refused, every message missed in 24 groups once, in order, no gap', async (context) => {
    const groups = Array.from({ length: 24 }, (_, i) => `h.r${i}`);
    const proxy = await tcpProxy(cluster.nodes[0]!.port);
    let draws = 0;
    const random = (): number => (draws++, Math.random());
    const rx = sdkClient(proxy.port, { user: 'recovering', reconnect: { initialMs: 50, soonMs: 50, maxMs: 500 }, random });
    await rx.client.connect();
    for (const group of groups) await rx.client.join(group);
    const publisher = await member(cluster.nodes[0]!.port, 'pub', []);
    cluster.open.push(publisher);
    proxy.freeze = true;
    const PER_GROUP = 3;
    for (const group of groups) {
      for (let seq = 1; seq <= PER_GROUP; seq++) publisher.send({ op: 'pub', group, data: { seq }, ref: `${group}/${seq}` });
    }
    assert.equal((await publisher.next((f) => f.ref === `${groups.at(-1)}/${PER_GROUP}`, 10_000)).op, 'ack');
    const reopened = nextOpen(rx.client);
    proxy.freeze = false;
    proxy.cut();
    await reopened;
    const [drawsBefore, reopenedAt] = [draws, performance.now()];
    const seqsOf = (group: string): number[] => rx.messages.filter((m) => m.group === group).map((m) => (m.data as { seq: number }).seq);
    await until(() => (groups.every((g) => seqsOf(g).length >= PER_GROUP) ? true : undefined), 'every group recovered', 20_000);
    context.diagnostic(`recovered in ${(performance.now() - reopenedAt).toFixed(0)} ms, re-joins refused and sent again: ${draws - drawsBefore}`);
    assert.equal(draws, drawsBefore, 'no re-join refused (each would be sent again after a random pause)');
    assert.deepEqual(rx.errors, []);
    for (const group of groups) assert.deepEqual(seqsOf(group), [1, 2, 3], group);
    assert.deepEqual(rx.gaps, []);
    await rx.client.close();
    await proxy.close();
  });
});

describe('presence answers of the most names are bounded the same way', { skip }, () => {
  // The least max_replay_bytes (1 KiB): 4 KiB of answers a second, and ten names of 128 characters, 1.4 KB an answer.
  const presenceConfig = (redisUrl: string): Record<string, unknown> => {
    const node = nodeConfig(redisUrl, 'pb:', 1, { websocket: { presence: { max_list: 10 } } });
    node.history = { ...(node.history as object), max_replay_bytes: 1024 };
    return node;
  };
  const cluster = clusterFixture({ nodes: [{ config: presenceConfig }] });

  test('pipelined past the budget they are refused E_RATE_LIMITED without asking Redis', async (context) => {
    for (let i = 0; i < 10; i++) cluster.open.push(await member(cluster.nodes[0]!.port, `${i}`.padStart(128, 'u'), ['crowd']));
    const asker = cluster.open[0]!;
    const frames = Array.from({ length: 40 }, (_, i) => ({ op: 'presence', group: 'crowd', ref: `q${i}` }));
    const lists = await ask(cluster.redis.url, 'crowd', asker, frames, (f) => f.op === 'presence' && Object.keys(f.users as object).length === 10);
    context.diagnostic(`${lists.answered} of 40 answered, ${lists.refused.length} refused, ${lists.scripts} scripts on the group, ${lists.ms.toFixed(0)} ms`);
    bounded(lists, 4096, 1400, 'lists of 1.4 KB');
  });
});

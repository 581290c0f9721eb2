/**
 * Review of 60272fb: ROUTE_USER answers 'pump' when others wait in P qu:USER without P wb:USER,
 * and sets the mark; every later ROUTE_USER of the user that runs before that PUMP then sees the
 * mark with nothing in flight (n == 0) and answers 'pump' too. A batch of the user's messages
 * that a SWEEP makes waiting at once (scheduled ones falling due together, or a window's worth
 * swept back at their deadline) is routed message by message in the same tick: one PUMP each.
 * Counted here with MONITOR on a real node and a private Redis.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import { PUMP, ROUTE_USER } from '../src/cluster/window-scripts.js';
import { member } from './helpers/client.js';
import { nextMsgs } from './helpers/messaging.js';
import { announceSkip, nodeConfig, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { startProcess, type ServerProcess } from './helpers/server.js';

const skip = announceSkip('review-pump-storm.test');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const sha = (s: string): string => createHash('sha1').update(s).digest('hex');
const N = Number(process.env.REVIEW_N ?? 300);

describe('review: many of a user\'s messages made waiting by one sweep', { skip, timeout: 120_000 }, () => {
  let redis: PrivateRedis;
  let node: ServerProcess;
  let store: Redis;
  let monitor: Redis;
  const calls = new Map<string, number>();
  before(async () => {
    redis = await startPrivateRedis();
    node = await startProcess(nodeConfig(redis.url, 'ps:', 1, { websocket: { delivery: { ack_timeout: 1, max_backoff: 1, max_attempts: 10, max_inflight_per_user: Number(process.env.REVIEW_WINDOW ?? 10000) } } }));
    store = redis.client();
    if (process.env.REVIEW_NOMON) return;
    monitor = await store.monitor();
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (String(args[0]).toLowerCase() !== 'evalsha') return;
      calls.set(args[1]!, (calls.get(args[1]!) ?? 0) + 1);
    });
  });
  after(async () => {
    monitor?.disconnect();
    await store?.quit();
    await node?.stop();
    await redis?.stop();
  });

  const count = (): { route: number; pump: number } => ({ route: calls.get(sha(ROUTE_USER)) ?? 0, pump: calls.get(sha(PUMP)) ?? 0 });

  test(`${N} scheduled messages falling due together`, async () => {
    const sender = await member(node.port, 'sender');
    const reader = await member(node.port, 'reader');
    const at = Date.now() + 2000;
    for (let i = 0; i < N; i++) sender.send({ op: 'send', to: 'reader', data: i, at, ref: `s${i}` });
    for (let i = 0; i < N; i++) await sender.next((f) => f.ref === `s${i}`, 10_000);
    await sleep(200);
    const stats = async (): Promise<{ calls: number; usec: number }> => {
      const m = /cmdstat_evalsha:calls=(\d+),usec=(\d+)/.exec(await store.info('commandstats'));
      return { calls: Number(m?.[1] ?? 0), usec: Number(m?.[2] ?? 0) };
    };
    const t0 = await stats();
    const before = count();
    const got = (await nextMsgs(reader, N, 15_000)).map((m) => m.data as number);
    await sleep(500);
    const after = count();
    const t1 = await stats();
    console.log(`scheduled: evalsha calls ${t1.calls - t0.calls}, Redis usec in them ${t1.usec - t0.usec}`);
    console.log(`scheduled: ROUTE_USER ${after.route - before.route}, PUMP ${after.pump - before.pump}; got ${got.length}, distinct ${new Set(got).size}`);
    assert.equal(new Set(got).size, N);
    // Not acked: all N time out together 1 s later and are swept back to waiting at once.
    const s0 = await stats();
    const before2 = count();
    const again = (await nextMsgs(reader, N, 30_000)).map((m) => m.data as number);
    await sleep(300);
    const after2 = count();
    const s1 = await stats();
    console.log(`swept back: evalsha calls ${s1.calls - s0.calls}, Redis usec in them ${s1.usec - s0.usec}`);
    console.log(`swept back: ROUTE_USER ${after2.route - before2.route}, PUMP ${after2.pump - before2.pump}; got ${again.length}, distinct ${new Set(again).size}, in order: ${again.every((d, i) => i === 0 || d > again[i - 1]!)}`);
    sender.close();
    reader.close();
    if (!process.env.REVIEW_NOMON) assert.ok(after.pump - before.pump <= 2, `${after.pump - before.pump} PUMP scripts for one sweep's ${N} messages of one user`);
  });
});

describe('review: a burst of sends to one online user (the hot path)', { skip, timeout: 120_000 }, () => {
  let redis: PrivateRedis;
  let node: ServerProcess;
  let store: Redis;
  let monitor: Redis;
  const calls = new Map<string, number>();
  before(async () => {
    redis = await startPrivateRedis();
    node = await startProcess(nodeConfig(redis.url, 'pb:', 1, { websocket: { delivery: { ack_timeout: 5, max_backoff: 5, before_commit: process.env.REVIEW_BC !== '0' } } }));
    store = redis.client();
    monitor = await store.monitor();
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (String(args[0]).toLowerCase() !== 'evalsha') return;
      calls.set(args[1]!, (calls.get(args[1]!) ?? 0) + 1);
    });
  });
  after(async () => {
    monitor?.disconnect();
    await store?.quit();
    await node?.stop();
    await redis?.stop();
  });

  test(`${N} sends at once, each acked on arrival`, async () => {
    const sender = await member(node.port, 'sender');
    const reader = await member(node.port, 'reader');
    await sleep(200);
    const route0 = calls.get(sha(ROUTE_USER)) ?? 0;
    const pump0 = calls.get(sha(PUMP)) ?? 0;
    const t0 = Date.now();
    for (let i = 0; i < N; i++) sender.send({ op: 'send', to: 'reader', data: i, ref: `b${i}` });
    const got: number[] = [];
    while (got.length < N) {
      for (const m of await nextMsgs(reader, 1, 15_000)) {
        got.push(m.data as number);
        reader.send({ op: 'ack', id: m.id });
      }
    }
    const took = Date.now() - t0;
    await sleep(500);
    const routes = (calls.get(sha(ROUTE_USER)) ?? 0) - route0;
    const pumps = (calls.get(sha(PUMP)) ?? 0) - pump0;
    console.log(`burst: ROUTE_USER ${routes}, PUMP ${pumps}; ${got.length} got in ${took} ms, distinct ${new Set(got).size}, in order ${got.every((d, i) => i === 0 || d > got[i - 1]!)}`);
    sender.close();
    reader.close();
  });
});

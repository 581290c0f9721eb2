/**
 * Review of 4a380d2: past users x dead nodes > budget, PRESENCE_ANSWER reads each listed user's
 * P pu:USER with one HMGET naming every dead node (up to MAX_DEAD = 200), and counts it as one
 * step of its budget. The work it bounds is then users x dead nodes field reads, the very
 * product the budget was meant to cap: with max_list users and many dead nodes, one answer holds
 * Redis far longer than an answer within budget.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { PRESENCE_ANSWER, PRESENCE_SCAN_FACTOR, SYNC_GROUP } from '../src/cluster/presence-scripts.js';
import { announceSkip, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { commandsDuring } from './helpers/script-work.js';

const skip = announceSkip('review2-presence-budget.test');
const P = 'pb:';
const TTL = 3000;
const USERS = 2000;
const EACH = 5;

describe('presence answer work with many dead nodes', { skip, timeout: 120_000 }, () => {
  let server: PrivateRedis;
  let redis: Redis;
  before(async () => {
    server = await startPrivateRedis();
    redis = new Redis(server.url);
    await redis.zadd(`${P}nodes`, Date.now() + 3_600_000, 'live');
    const users = Array.from({ length: USERS }, (_, i) => `u${i}`);
    for (let start = 0; start < USERS; start += 200) {
      const args: Array<string | number> = [];
      for (const user of users.slice(start, start + 200)) for (let i = 0; i < EACH; i++) args.push(`${user}.${i}`, user, 1);
      await redis.eval(SYNC_GROUP, 0, P, 'live', 'crowd', 0, args.length / 3, ...args);
    }
    const pipe = redis.pipeline();
    for (const user of users) pipe.hset(`${P}pu:${user}`, 'live', EACH);
    await pipe.exec();
  });
  after(async () => {
    redis?.disconnect();
    await server?.stop();
  });

  const timed = async (): Promise<{ ms: number; fields: number; steps: number }> => {
    let fields = 0;
    let steps = 0;
    const ran = await commandsDuring(server.url, async () => {
      await redis.eval(PRESENCE_ANSWER, 0, P, 'crowd', USERS, 0, Date.now() - TTL);
    });
    for (const [name, key, ...rest] of ran) {
      if (name === 'HMGET' || name === 'ZLEXCOUNT' || name === 'HGETALL') steps++;
      if (name === 'HMGET' && key!.startsWith(`${P}pu:`)) fields += rest.length;
      // Each user's P pu: holds one field here (its one live node).
      if (name === 'HGETALL' && key!.startsWith(`${P}pu:`)) fields += 1;
    }
    // Timed apart from MONITOR (which slows every command).
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 5; i++) await redis.eval(PRESENCE_ANSWER, 0, P, 'crowd', USERS, 0, Date.now() - TTL);
    return { ms: Number(process.hrtime.bigint() - t0) / 5e6, fields, steps };
  };

  test('one answer reads at most about its budget of fields, whatever the number of dead nodes', async () => {
    const budget = PRESENCE_SCAN_FACTOR * USERS;
    const base = await timed();
    const dead = Array.from({ length: 200 }, (_, i) => `dead${i}`);
    for (const node of dead) await redis.zadd(`${P}nodes`, Date.now() - 60_000, node);
    const many = await timed();
    console.log(`# ${USERS} users, ${USERS * EACH} conns, budget ${budget}: no dead node ${base.ms.toFixed(1)} ms; 200 dead nodes ${many.ms.toFixed(1)} ms, ${many.steps} steps, ${many.fields} pu fields read`);
    assert.ok(many.fields <= 2 * budget, `${many.fields} fields of P pu: read by one answer, budget ${budget} steps (${many.ms.toFixed(1)} ms vs ${base.ms.toFixed(1)} ms with no dead node)`);
  });
});

/**
 * The dead letters of the Redis store (`P dlq`, `P d:ID`: scripts.ts), read and removed for
 * /admin/dlq (src/broker/dlq-admin.ts serves both stores with one HTTP contract). Listed in id
 * order, as the LMDB store lists them, with the id as the cursor. Whatever Redis cannot answer
 * rejects with E_CLUSTER_UNAVAILABLE, which the API answers 503.
 */
import type { Redis } from 'ioredis';
import type { DeadLetterStore } from '../broker/dlq-admin.js';
import { OcsError } from '../protocol/errors.js';
import type { DeadLetter } from '../store/messages.js';
import type { Keys } from './keys.js';
import type { ScriptRunner } from './script-runner.js';

/** Letters one PURGE step deletes: a large queue is purged in steps, so Redis never blocks long on it. */
const PURGE_STEP = 1000;

/** ARGV: P step -> letters deleted (0: none left). */
const PURGE = `
local P, step = ARGV[1], tonumber(ARGV[2])
local ids = redis.call('ZRANGE', P..'dlq', 0, step - 1)
for _, id in ipairs(ids) do redis.call('DEL', P..'d:'..id) end
if #ids > 0 then redis.call('ZREM', P..'dlq', unpack(ids)) end
return #ids
`;

/** ARGV: P id -> 1 when the letter was there. */
const REMOVE = `
local P, id = ARGV[1], ARGV[2]
redis.call('DEL', P..'d:'..id)
return redis.call('ZREM', P..'dlq', id)
`;

export class RedisDeadLetters implements DeadLetterStore {
  private readonly dlq: string;

  constructor(
    private readonly redis: Redis,
    private readonly scripts: ScriptRunner,
    private readonly keys: Keys,
  ) {
    this.dlq = `${keys.prefix}dlq`;
  }

  countDead(): Promise<number> {
    return this.guard(this.redis.zcard(this.dlq));
  }

  async listDead(limit: number, after?: string): Promise<DeadLetter[]> {
    const ids = await this.guard(this.redis.zrangebylex(this.dlq, after === undefined ? '-' : `(${after}`, '+', 'LIMIT', 0, limit));
    const letters = await Promise.all(ids.map((id) => this.getDead(id)));
    // A letter removed between the two reads is simply not listed.
    return letters.filter((letter): letter is DeadLetter => letter !== undefined);
  }

  async getDead(id: string): Promise<DeadLetter | undefined> {
    const f = await this.guard(this.redis.hgetall(`${this.keys.prefix}d:${id}`));
    if (f.target === undefined) return undefined;
    return {
      id,
      seq: Number(f.seq ?? 0),
      target: f.target,
      from: f.from ?? '',
      group: f.group ? f.group : null,
      data: f.data ?? 'null',
      pri: Number(f.pri ?? 1),
      ts: Number(f.ts ?? 0),
      at: Number(f.at ?? 0),
      attempts: Number(f.attempts ?? 0),
      strategy: f.strategy ? f.strategy : null,
      reason: f.reason ?? '',
      failedAt: Number(f.failedAt ?? 0),
    };
  }

  async removeDead(id: string): Promise<boolean> {
    // Read before, gone now: another node requeued or purged it meanwhile (the admin answers 404, not purged).
    if ((await this.guard(this.scripts.run(REMOVE, [this.keys.prefix, id]))) === 0) throw new OcsError('E_UNKNOWN_ID', `no dead letter ${id} (requeued or purged meanwhile)`);
    return true;
  }

  async purgeDead(): Promise<number> {
    let purged = 0;
    for (;;) {
      const step = Number(await this.guard(this.scripts.run(PURGE, [this.keys.prefix, PURGE_STEP])));
      purged += step;
      if (step < PURGE_STEP) return purged;
    }
  }

  private guard<T>(answer: Promise<T>): Promise<T> {
    return answer.catch((err: unknown) => {
      throw new OcsError('E_CLUSTER_UNAVAILABLE', `the dead letters are kept in Redis, which did not answer (${(err as Error).message})`);
    });
  }
}

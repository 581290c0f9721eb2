/**
 * The dead letters of the Redis store (`P dlq`, `P d:ID`: dead-letter-scripts.ts), read and removed for
 * /admin/dlq (src/broker/dlq-admin.ts serves both stores with one HTTP contract). Listed in id
 * order, as the LMDB store lists them, with the id as the cursor. Whatever Redis cannot answer
 * rejects with E_CLUSTER_UNAVAILABLE, which the API answers 503.
 */
import type { Redis } from 'ioredis';
import type { DeadLetterStore } from '../broker/dlq-admin.js';
import { OcsError } from '../protocol/errors.js';
import type { DeadLetter } from '../store/messages.js';
import { INDEX_AGES, PURGE, PURGE_STEP, REMOVE } from './dead-letter-scripts.js';
import type { Keys } from './keys.js';
import type { ScriptRunner } from './script-runner.js';

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

  /**
   * Gives an age (their failedAt) to the letters that have none, written by a version before
   * the bound (dead-letter-scripts.ts); resolves to how many. In steps: Redis is never held long.
   */
  async indexAges(): Promise<number> {
    let indexed = 0;
    for (let after = ''; ; ) {
      const [last, n] = (await this.scripts.run(INDEX_AGES, [this.keys.prefix, after, PURGE_STEP])) as [string, number];
      indexed += n;
      if (last === '') return indexed;
      after = last;
    }
  }

  private guard<T>(answer: Promise<T>): Promise<T> {
    return answer.catch((err: unknown) => {
      throw new OcsError('E_CLUSTER_UNAVAILABLE', `the dead letters are kept in Redis, which did not answer (${(err as Error).message})`);
    });
  }
}

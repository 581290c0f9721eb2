/**
 * How the node runs the Lua scripts of the Redis store (scripts.ts and its neighbours): by
 * SHA1, with the script cache filled before traffic. Apart from the scripts because it is about
 * Redis's script cache, not about any one decision.
 */
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

/**
 * Runs the scripts by their SHA1 (EVALSHA), so a message costs Redis its arguments, not the
 * script's text; a Redis that does not know a script yet (a restart flushed its cache) gets
 * the text once (EVAL), as NOSCRIPT asks.
 */
export class ScriptRunner {
  private readonly shas = new Map<string, string>();
  /** How many scripts went as text after a NOSCRIPT: each ran after the commands sent behind it. */
  resent = 0;

  constructor(private readonly redis: Redis) {}

  /**
   * Loads `sources` into Redis's script cache (after connecting, and after an outage: a restart
   * empties it), so that they never meet NOSCRIPT: its fallback resends a script later, after
   * commands sent behind it, and a history group's pubs must run in the order sent.
   */
  async load(sources: readonly string[]): Promise<void> {
    await Promise.all(sources.map((source) => this.redis.script('LOAD', source)));
  }

  async run(source: string, args: Array<string | number>): Promise<unknown> {
    let sha = this.shas.get(source);
    if (sha === undefined) this.shas.set(source, (sha = createHash('sha1').update(source).digest('hex')));
    try {
      return await this.redis.evalsha(sha, 0, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      this.resent++;
      return this.redis.eval(source, 0, ...args);
    }
  }
}

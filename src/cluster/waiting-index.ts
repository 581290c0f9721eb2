/**
 * The index of the `any` messages that wait for a member (P qw:GROUP, scripts.ts), rebuilt from
 * the group queues: a join reads only the index (before it, each join scanned its group's whole
 * queue in Redis, so a join storm on a group with 10,000 queued held Redis for seconds), so a
 * message that a version without the index left waiting would otherwise wait until it expired.
 * Run in the background once the node is up, at each start: it SCANs the whole keyspace twice
 * (0.87 s for 700,000 keys on loopback, one run of the review's script). A node of the older version still running can go on
 * leaving unindexed ones (docs/messaging.md, "Not done in cluster mode"); ids it removed are
 * dropped from the index here, and by ROUTE_ANY when a join finds them.
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../util/logger.js';
import type { ScriptRunner } from './script-runner.js';

/** ARGV: P group -> how many waiting messages were not in the index. One script: no node's change interleaves. */
export const INDEX_WAITING = `
local P = ARGV[1]
local q, qw = P..'q:g:'..ARGV[2], P..'qw:'..ARGV[2]
local before = redis.call('ZCARD', qw)
redis.call('DEL', qw)
local waiting = 0
for _, id in ipairs(redis.call('ZRANGE', q, 0, -1)) do
  if redis.call('HGET', P..'m:'..id, 'state') == 'w' then waiting = waiting + redis.call('ZADD', qw, redis.call('ZSCORE', q, id), id) end
end
return math.max(0, waiting - before)
`;

/**
 * Rebuilds the index of every group with a queue or an index under `prefix` (an index whose
 * queue is gone is emptied); resolves to how many waiting messages it lacked (at least).
 */
export async function indexWaiting(commands: Redis, scripts: ScriptRunner, prefix: string): Promise<number> {
  const groups = new Set<string>();
  for (const kind of ['q:g:', 'qw:']) {
    const start = `${prefix}${kind}`;
    // The prefix is the operator's: its glob characters are matched literally.
    const match = `${start.replace(/[*?[\]\\]/g, '\\$&')}*`;
    let cursor = '0';
    do {
      const [next, keys] = await commands.scan(cursor, 'MATCH', match, 'COUNT', 1000);
      cursor = next;
      for (const key of keys) groups.add(key.slice(start.length));
    } while (cursor !== '0');
  }
  let added = 0;
  for (const group of groups) added += (await scripts.run(INDEX_WAITING, [prefix, group])) as number;
  return added;
}

/**
 * What an older version left unindexed (waiting `any` messages, dead letters without an age),
 * indexed once per process in the background, when the node is first up; a failed try is made
 * again at the next `runOnce` (the next resynchronisation with Redis).
 */
export class OlderVersionIndexing {
  private started = false;

  constructor(
    private readonly indexAll: () => [Promise<number>, Promise<number>],
    private readonly log: Logger,
    private readonly stopped: () => boolean,
  ) {}

  runOnce(): void {
    if (this.started) return;
    this.started = true;
    Promise.all(this.indexAll()).then(
      ([added, aged]) => {
        if (added > 0) this.log.info({ added }, 'cluster: waiting any messages stored without the index (an older version) indexed');
        if (aged > 0) this.log.info({ aged }, 'cluster: dead letters stored without an age (an older version) indexed for their bound');
      },
      (err: unknown) => {
        this.started = false;
        if (!this.stopped()) this.log.warn({ code: 'E_CLUSTER_UNAVAILABLE', err }, 'cluster: indexing what an older version left unindexed (waiting any messages, dead-letter ages) failed; trying again when Redis is back');
      },
    );
  }
}

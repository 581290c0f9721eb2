/**
 * The index of the `any` messages that wait for a member (P qw:GROUP, scripts.ts), brought up
 * to date with what a version without it stored: a join reads only the index (before it, each
 * join scanned its group's whole queue in Redis, so a join storm on a group with 10,000 queued
 * held Redis for seconds), so a message left waiting by such a version would otherwise wait
 * until it expired. Run when the node first reaches Redis; a node of the older version still
 * running then can go on storing unindexed ones (docs/messaging.md, "Not done in cluster mode").
 */
import type { Redis } from 'ioredis';
import type { ScriptRunner } from './script-runner.js';

/** ARGV: P group -> how many waiting messages were not in the index. */
export const INDEX_WAITING = `
local P = ARGV[1]
local q = P..'q:g:'..ARGV[2]
local added = 0
for _, id in ipairs(redis.call('ZRANGE', q, 0, -1)) do
  if redis.call('HGET', P..'m:'..id, 'state') == 'w' then added = added + redis.call('ZADD', P..'qw:'..ARGV[2], redis.call('ZSCORE', q, id), id) end
end
return added
`;

/** Indexes the waiting messages of every group queue under `prefix`; resolves to how many were missing. */
export async function indexWaiting(commands: Redis, scripts: ScriptRunner, prefix: string): Promise<number> {
  const queues = `${prefix}q:g:`;
  // The prefix is the operator's: its glob characters are matched literally.
  const match = `${queues.replace(/[*?[\]\\]/g, '\\$&')}*`;
  let added = 0;
  let cursor = '0';
  do {
    const [next, keys] = await commands.scan(cursor, 'MATCH', match, 'COUNT', 1000);
    cursor = next;
    for (const key of keys) added += (await scripts.run(INDEX_WAITING, [prefix, key.slice(queues.length)])) as number;
  } while (cursor !== '0');
  return added;
}

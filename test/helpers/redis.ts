/**
 * Redis for the cluster tests: a private `redis-server` on a free port (tools/lib/redis-server.ts)
 * that a test may kill and start again, never the shared one at 127.0.0.1:6379. Without the
 * binary the cluster tests skip, saying so loudly.
 */
import { Redis } from 'ioredis';
import { REDIS_SERVER, redisServerAvailable } from '../../tools/lib/redis-server.js';
import { testConfig } from './server.js';

export { startPrivateRedis, type PrivateRedis, type PrivateRedisOptions } from '../../tools/lib/redis-server.js';

/** Why the cluster tests cannot run here, or false when they can. */
export function redisSkipReason(): string | false {
  return redisServerAvailable() ? false : `SKIPPED: no ${REDIS_SERVER} binary on PATH (apt-get install -y redis-server); cluster mode was not tested`;
}

/** Says it on stderr, where a reader of `npm test` sees it, and returns it for { skip }. */
export function announceSkip(file: string): string | false {
  const reason = redisSkipReason();
  if (reason) process.stderr.write(`\n*** ${file}: ${reason} ***\n\n`);
  return reason;
}

/** A node's config: fast redeliveries and a short presence TTL, so the tests need not wait long. */
export function nodeConfig(redisUrl: string, prefix: string, shards = 1, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return testConfig({
    websocket: { server: { shards }, groups: { require_membership: false }, delivery: { ack_timeout: 1, max_backoff: 2 }, ...(extra.websocket as object) },
    cluster: { redis_url: redisUrl, key_prefix: prefix, presence_ttl: 3, sweep_interval: 0.05, ...(extra.cluster as object) },
    ...(extra.store === undefined ? {} : { store: extra.store }),
  });
}

/**
 * Listens to every group's presence records under key prefix `prefix` ("[0xff]+user\n-user",
 * presence-scripts.ts): `changed(group, change)` for each "+user" or "-user". Disconnect the
 * returned client when done.
 */
export async function presenceChanges(url: string, prefix: string, changed: (group: string, change: string) => void): Promise<Redis> {
  const listener = new Redis(url);
  await listener.psubscribe(`${prefix}g:*`);
  listener.on('pmessageBuffer', (_pattern: Buffer, channel: Buffer, payload: Buffer) => {
    if (payload[0] !== 0xff) return;
    const group = channel.toString().slice(`${prefix}g:`.length);
    for (const change of payload.subarray(1).toString().split('\n')) changed(group, change);
  });
  return listener;
}

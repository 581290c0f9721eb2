/**
 * Redis for the cluster tests: a private `redis-server` on a free port (tools/lib/redis-server.ts)
 * that a test may kill and start again, never the shared one at 127.0.0.1:6379. Without the
 * binary the cluster tests skip, saying so loudly.
 */
import { REDIS_SERVER, redisServerAvailable } from '../../tools/lib/redis-server.js';

export { startPrivateRedis, type PrivateRedis } from '../../tools/lib/redis-server.js';

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

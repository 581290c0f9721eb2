/**
 * Per-IP limits in front of the upgrade: how fast one address may open connections, how many
 * of its sockets may sit unauthenticated (a slot is taken before credentials arrive, so 200
 * sockets a second that never send `auth` would otherwise keep a 2,000-slot server full), and
 * how many it may hold open at once. An "address" is client-address.ts's addressGroup(): an
 * IPv6 client counts under its /64 (ipv6_prefix_length).
 *
 * Each shard keeps its own table: the kernel spreads one address's connections evenly over
 * the shards (SO_REUSEPORT hashes the 4-tuple), so the configured per-server figures are
 * divided by the shard count. The table is bounded: past `maxAddresses` idle entries are
 * swept, and an address that finds it still full is refused (counted, coded) rather than the
 * table growing without limit under an attack from many addresses. An address with open
 * connections stays while it has them (under maxOpen), and is not counted against
 * `maxAddresses`: those entries are bounded by the shard's connections.
 *
 * Plain HTTP requests (/health, /metrics, /stats, /dashboard, /admin, a 404) have a bucket of
 * their own: they arrive on keep-alive connections that no upgrade limit sees, and four such
 * connections scraping /metrics took 717-840 MB a second of answers (27 KB for each 40-byte request).
 */

export interface IpLimitOptions {
  /** Connection attempts per second per address (0: unlimited), and the burst above it. */
  attemptsPerSecond: number;
  burst: number;
  /** Unauthenticated sockets per address at once (0: unlimited). */
  maxUnauthenticated: number;
  /** Open connections per address at once (0: unlimited, and not counted). */
  maxOpen: number;
  /** Addresses tracked at once. */
  maxAddresses: number;
  /** HTTP requests other than upgrades per second per address (0: unlimited), and the burst above it. */
  requestsPerSecond: number;
  requestBurst: number;
}

/** A token bucket: `tokens` as of `at` (ms on the wall clock). */
interface Bucket {
  tokens: number;
  at: number;
}

interface Entry {
  attempts: Bucket;
  requests: Bucket;
  unauthenticated: number;
  open: number;
}

export type IpVerdict = 'ok' | 'too_fast' | 'too_many_unauthenticated' | 'too_many_connections' | 'table_full';
export type RequestVerdict = 'ok' | 'too_fast' | 'table_full';

/**
 * `bucket`'s tokens at `now`, refilled at `perMs` up to `burst`. The wall clock may step back
 * (NTP, a restored VM): the time since then counts from now, rather than putting the address
 * in debt (429 for everything) for the length of the step.
 */
function refill(bucket: Bucket, perMs: number, burst: number, now: number): number {
  if (now < bucket.at) bucket.at = now;
  return Math.min(burst, bucket.tokens + (now - bucket.at) * perMs);
}

/** Takes one token from `bucket` if it has one at `now`. */
function take(bucket: Bucket, perMs: number, burst: number, now: number): boolean {
  bucket.tokens = refill(bucket, perMs, burst, now);
  bucket.at = now;
  if (bucket.tokens < 1) return false;
  bucket.tokens -= 1;
  return true;
}

/** One shard's share of the configured per-server limits (websocket.limits). */
export function ipLimitsPerShard(
  limits: {
    connection_attempts_per_ip: number;
    connection_burst_per_ip: number;
    unauthenticated_per_ip: number;
    max_connections_per_ip: number;
    max_tracked_ips: number;
    http_requests_per_ip: number;
    http_burst_per_ip: number;
  },
  shards: number,
): IpLimitOptions {
  // Rounded up, and never to 0 (which means unlimited): one shard may see a little more than its share.
  const share = (n: number): number => (n === 0 ? 0 : Math.max(1, Math.ceil(n / shards)));
  return {
    attemptsPerSecond: limits.connection_attempts_per_ip / shards,
    burst: share(limits.connection_burst_per_ip),
    maxUnauthenticated: share(limits.unauthenticated_per_ip),
    maxOpen: share(limits.max_connections_per_ip),
    maxAddresses: limits.max_tracked_ips,
    requestsPerSecond: limits.http_requests_per_ip / shards,
    requestBurst: share(limits.http_burst_per_ip),
  };
}

export class IpLimiter {
  private readonly entries = new Map<string, Entry>();
  private readonly perMs: number;
  private readonly requestsPerMs: number;
  /** Entries kept for their open connections alone would not be swept: they do not fill the table. */
  private withOpen = 0;

  constructor(private readonly options: IpLimitOptions) {
    this.perMs = options.attemptsPerSecond / 1000;
    this.requestsPerMs = options.requestsPerSecond / 1000;
  }

  get tracked(): number {
    return this.entries.size;
  }

  /**
   * One connection attempt from `ip`. On 'ok' it holds one of the address's open places (when
   * they are counted) until closed() or cancel(), and when `unauthenticated` (the socket will
   * wait for an `auth` frame) one of its unauthenticated places until authenticated().
   */
  admit(ip: string, unauthenticated: boolean, now: number): IpVerdict {
    const { attemptsPerSecond, burst, maxUnauthenticated, maxOpen } = this.options;
    const entry = this.entryOf(ip, now);
    if (entry === null) return 'table_full';
    // Before the attempt is counted: a host at its cap that keeps knocking is refused for that,
    // and is not also made to wait for tokens once a connection closes.
    if (maxOpen > 0 && entry.open >= maxOpen) return 'too_many_connections';
    if (attemptsPerSecond > 0 && !take(entry.attempts, this.perMs, burst, now)) return 'too_fast';
    if (unauthenticated) {
      if (maxUnauthenticated > 0 && entry.unauthenticated >= maxUnauthenticated) return 'too_many_unauthenticated';
      entry.unauthenticated++;
    }
    if (maxOpen > 0 && entry.open++ === 0) this.withOpen++;
    return 'ok';
  }

  /** One HTTP request from `ip` that is not an upgrade (those are admit()'s). */
  request(ip: string, now: number): RequestVerdict {
    const { requestsPerSecond, requestBurst } = this.options;
    if (requestsPerSecond === 0) return 'ok';
    const entry = this.entryOf(ip, now);
    if (entry === null) return 'table_full';
    return take(entry.requests, this.requestsPerMs, requestBurst, now) ? 'ok' : 'too_fast';
  }

  /** `ip`'s entry, made with full buckets if new; null when the table is full of busy addresses. */
  private entryOf(ip: string, now: number): Entry | null {
    let entry = this.entries.get(ip);
    if (entry === undefined) {
      if (this.entries.size - this.withOpen >= this.options.maxAddresses && this.sweep(now) === 0) return null;
      const { burst, requestBurst } = this.options;
      entry = { attempts: { tokens: burst, at: now }, requests: { tokens: requestBurst, at: now }, unauthenticated: 0, open: 0 };
      this.entries.set(ip, entry);
    }
    return entry;
  }

  /** The socket admitted as unauthenticated authenticated, or closed before it did. */
  authenticated(ip: string): void {
    const entry = this.entries.get(ip);
    if (entry !== undefined && entry.unauthenticated > 0) entry.unauthenticated--;
  }

  /** A connection admitted from `ip` closed. */
  closed(ip: string): void {
    const entry = this.entries.get(ip);
    if (entry !== undefined && entry.open > 0 && --entry.open === 0) this.withOpen--;
  }

  /** An admitted attempt that was refused after all (server full, bad token): both its places back. */
  cancel(ip: string, unauthenticated: boolean): void {
    if (unauthenticated) this.authenticated(ip);
    this.closed(ip);
  }

  /** Forgets addresses with full buckets and no socket counted; returns how many. */
  sweep(now: number): number {
    const { attemptsPerSecond, burst, requestsPerSecond, requestBurst } = this.options;
    let removed = 0;
    for (const [ip, entry] of this.entries) {
      const refilled =
        (attemptsPerSecond === 0 || refill(entry.attempts, this.perMs, burst, now) >= burst) &&
        (requestsPerSecond === 0 || refill(entry.requests, this.requestsPerMs, requestBurst, now) >= requestBurst);
      if (refilled && entry.unauthenticated === 0 && entry.open === 0) {
        this.entries.delete(ip);
        removed++;
      }
    }
    return removed;
  }
}

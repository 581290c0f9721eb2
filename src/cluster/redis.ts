/**
 * The node's two Redis connections (ioredis): one for commands and PUBLISH, one in subscriber
 * mode for the channels. ioredis reconnects by itself; here its options are set once
 * (backoff, no offline queue) and the two connections' states are folded into one: the node is
 * `up` while both are ready, `down` otherwise, and each change is logged once and reported to
 * the callbacks (never once per command).
 *
 * Why no offline queue: a command issued while Redis is unreachable would otherwise wait,
 * unbounded, for a reconnection; with it off the command fails at once and the sender gets a
 * coded refusal (E_CLUSTER_UNAVAILABLE) instead of silence.
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { Config } from '../config/schema.js';
import type { Logger } from '../util/logger.js';

export type RedisLinkState = 'connecting' | 'up' | 'down';

export interface RedisLinkOptions {
  config: Config['cluster'];
  log: Logger;
  /** Both connections ready (first time, or after an outage): resynchronise what lives in Redis. */
  onUp(): void;
  onDown(): void;
}

/**
 * A command that failed by cluster.command_timeout (ioredis: "Command timed out"): unlike one
 * refused while Redis is unreachable, it was sent, and Redis may still carry it out once it
 * answers again, so its refusal must not tell the client that nothing happened.
 */
export function timedOut(err: unknown): boolean {
  return err instanceof Error && /timed out/i.test(err.message);
}

/**
 * A write Redis refused because it is at its `maxmemory` (with `noeviction`, as the README
 * advises): a full store, as a full disk is on one process, not a failure of the server.
 */
export function outOfMemory(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('OOM ');
}

/** At most one line this often while Redis stays full (each refused request would log one). */
const OOM_LOG_EVERY_MS = 60_000;
/** By the node's logger, which all its parts share (each part passes a parts object of its own: a store's and a route's refusals each logged a line). */
const oomLoggedAt = new WeakMap<Logger, number>();

/**
 * A Redis command failed: Redis went away (the link logs that once), is full (logged at most
 * once a minute) or a script broke (logged here, with `during`: what the command was for).
 */
export function logCommandFailure(node: { up(): boolean; log: Logger }, err: unknown, during: string): void {
  // A timeout is Redis not answering, which the heartbeat turns into one "unreachable" line; one
  // line per request would flood the log (800 in 3 s of a frozen Redis at 200 sends a second).
  if (!node.up() || timedOut(err)) return;
  if (outOfMemory(err)) {
    const now = Date.now();
    if (now - (oomLoggedAt.get(node.log) ?? -Infinity) < OOM_LOG_EVERY_MS) return;
    oomLoggedAt.set(node.log, now);
    node.log.warn({ code: 'E_STORE_UNAVAILABLE', during }, 'cluster: Redis is at its maxmemory: stores are refused until acknowledgements free room (raise maxmemory)');
    return;
  }
  node.log.error({ code: 'E_INTERNAL', err, during }, 'cluster: a Redis command failed');
}

/** The first reconnection waits this long; each further one doubles it, up to reconnect_max_delay. */
const FIRST_RETRY_MS = 50;

export class RedisLink {
  readonly commands: Redis;
  readonly subscriber: Redis;
  private current: RedisLinkState = 'connecting';
  private lastError = '';
  private stopped = false;

  constructor(private readonly options: RedisLinkOptions) {
    const { config } = options;
    const maxDelay = config.reconnect_max_delay * 1000;
    const base: RedisOptions = {
      // Exponential backoff with jitter, so that the nodes of a cluster do not reconnect in step.
      retryStrategy: (times) => Math.round(Math.min(maxDelay, FIRST_RETRY_MS * 2 ** Math.min(times - 1, 20)) * (0.8 + Math.random() * 0.4)),
      enableOfflineQueue: false,
      // A command in flight when the connection drops fails at once rather than being resent
      // later, out of order with what the node did meanwhile.
      maxRetriesPerRequest: 0,
      commandTimeout: config.command_timeout * 1000,
      connectTimeout: Math.max(1000, config.command_timeout * 1000),
      // Channels are subscribed again by the node itself (onUp), with the set it wants now.
      autoResubscribe: false,
      lazyConnect: true,
    };
    // rediss:// (TLS) and a password in the URL are read by ioredis itself.
    // Commands issued in one event-loop turn (a drain of the shards' records: many PUBLISHes)
    // leave in one write.
    this.commands = new Redis(config.redis_url, { ...base, connectionName: 'ocs-node', enableAutoPipelining: true });
    this.subscriber = new Redis(config.redis_url, { ...base, connectionName: 'ocs-node-sub' });
    for (const client of [this.commands, this.subscriber]) {
      client.on('ready', () => this.changed(true));
      client.on('close', () => this.changed(false));
      client.on('end', () => this.changed(false));
      // ioredis logs unhandled 'error' events to stderr: the state change is logged here instead.
      client.on('error', (err: Error) => {
        this.lastError = err.message;
      });
    }
  }

  get state(): RedisLinkState {
    return this.current;
  }

  /**
   * The Redis server's run_id (INFO server): new at each start, and a replica's own, so a
   * history group written under another one may have lost writes (history-scripts.ts). '' when
   * Redis will not say.
   */
  runId(): Promise<string> {
    return this.commands.info('server').then(
      (info) => /run_id:(\w+)/.exec(info)?.[1] ?? '',
      () => '',
    );
  }

  /** The last connection error, for the log and /health. */
  get error(): string {
    return this.lastError;
  }

  /**
   * Starts connecting (and reconnecting, for as long as the node runs); resolves once the
   * first attempt settled either way (both connections ready, or one failed), or after
   * `waitMs`: a node whose Redis is down at start-up starts all the same, degraded.
   */
  connect(waitMs: number): Promise<void> {
    for (const client of [this.commands, this.subscriber]) client.connect().catch(() => {}); // failures drive the state; ioredis retries
    return new Promise((resolve) => {
      const timer = setTimeout(done, waitMs);
      const poll = setInterval(() => this.current !== 'connecting' && done(), 10);
      function done(): void {
        clearTimeout(timer);
        clearInterval(poll);
        resolve();
      }
    });
  }

  /**
   * Redis answers nothing (frozen, SIGSTOPped, a full network buffer) while its connections
   * stay open: ioredis only times commands out, so the node would say `ok` and refuse every
   * request. Dropping both connections makes it what it is, down (degraded in /health,
   * refusals with E_CLUSTER_UNAVAILABLE), and ioredis reconnects once Redis answers again.
   */
  unresponsive(why: string): void {
    if (this.stopped || this.current !== 'up') return;
    this.lastError = why;
    for (const client of [this.commands, this.subscriber]) client.disconnect(true);
    // Down now: a frozen peer's connections report their close only later, and meanwhile every
    // request failing on them would be taken for a broken script and logged.
    this.become('down');
  }

  /** Says goodbye (QUIT, after the replies pending) for at most `waitMs`, then drops the connections: a frozen Redis answers nothing. */
  async stop(waitMs: number): Promise<void> {
    this.stopped = true;
    const clients = [this.commands, this.subscriber];
    await atMost(Promise.all(clients.map((client) => client.quit().catch(() => client.disconnect()))), waitMs);
    for (const client of clients) if (client.status !== 'end') client.disconnect();
  }

  /** `ready`: one connection became ready (the other may still be connecting); otherwise one closed. */
  private changed(ready: boolean): void {
    if (this.stopped) return;
    const up = this.commands.status === 'ready' && this.subscriber.status === 'ready';
    if (!up && ready) return; // half-ready is not a change
    this.become(up ? 'up' : 'down');
  }

  private become(next: RedisLinkState): void {
    if (next === this.current) return;
    const before = this.current;
    this.current = next;
    if (next === 'up') {
      this.options.log.info({ was: before }, 'cluster: Redis reachable; this node serves the whole cluster');
      this.options.onUp();
    } else {
      this.options.log.error({ code: 'E_CLUSTER_UNAVAILABLE', lastError: this.lastError }, 'cluster: Redis unreachable; serving local traffic only, reconnecting');
      this.options.onDown();
    }
  }
}

/** `promise`, or nothing once `ms` have passed (it goes on alone); never a rejection. */
export async function atMost(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise.catch(() => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

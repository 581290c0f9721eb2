/**
 * Redis for the cluster tests: a private `redis-server` on a free port, in a temp directory,
 * that a test may kill and start again (never the shared one at 127.0.0.1:6379, which other
 * people's work uses). Without the binary the cluster tests skip, saying so loudly.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

const BINARY = 'redis-server';

/** Why the cluster tests cannot run here, or false when they can. */
export function redisSkipReason(): string | false {
  const probe = spawnSync(BINARY, ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    return `SKIPPED: no ${BINARY} binary on PATH (apt-get install -y redis-server); cluster mode was not tested`;
  }
  return false;
}

/** Says it on stderr, where a reader of `npm test` sees it, and returns it for { skip }. */
export function announceSkip(file: string): string | false {
  const reason = redisSkipReason();
  if (reason) process.stderr.write(`\n*** ${file}: ${reason} ***\n\n`);
  return reason;
}

export interface PrivateRedis {
  port: number;
  url: string;
  /** A client for the test itself (inspecting keys), closed by stop(). */
  client(): Redis;
  /** SIGKILL: no shutdown, no save, as a crash or a cut cable looks to the nodes. */
  kill(): Promise<void>;
  /** Starts it again on the same port and directory (its append-only file, if on, brings the data back). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export interface RedisOptions {
  /** appendonly yes + appendfsync always: every write on disk before Redis answers. */
  durable?: boolean;
}

export async function startPrivateRedis(options: RedisOptions = {}): Promise<PrivateRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'ocs-redis-'));
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--daemonize', 'no', '--loglevel', 'warning'];
  if (options.durable) args.push('--appendonly', 'yes', '--appendfsync', 'always');
  else args.push('--appendonly', 'no');
  let child: ChildProcess | null = null;
  const clients: Redis[] = [];
  const launch = async (): Promise<void> => {
    child = spawn(BINARY, args, { stdio: 'ignore' });
    await waitForPing(port);
  };
  const killNow = async (): Promise<void> => {
    const running = child;
    child = null;
    if (!running || running.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      running.once('exit', () => resolve());
      running.kill('SIGKILL');
    });
  };
  await launch();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    client: () => {
      const client = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
      client.on('error', () => {});
      clients.push(client);
      return client;
    },
    kill: killNow,
    restart: launch,
    stop: async () => {
      for (const client of clients) client.disconnect();
      await killNow();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function waitForPing(port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const client = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.ping();
      client.disconnect();
      return;
    } catch {
      client.disconnect();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  throw new Error(`redis-server on port ${port} did not answer within 10 s`);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

/** A key prefix no other run shares. */
export function uniquePrefix(name: string): string {
  return `ocs-test:${name}:${process.pid}:${Date.now().toString(36)}:`;
}

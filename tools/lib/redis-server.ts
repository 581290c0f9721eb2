// A private redis-server for the cluster tests and benchmarks: on a free port, in a temp
// directory, killed and started again at will (never the shared one at 127.0.0.1:6379, which
// other people's work uses).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import { freePort } from './free-port.js';
import { selfSigned } from './self-signed.js';

export const REDIS_SERVER = 'redis-server';

/** Whether `redis-server` runs here. */
export function redisServerAvailable(): boolean {
  const probe = spawnSync(REDIS_SERVER, ['--version'], { encoding: 'utf8' });
  return !probe.error && probe.status === 0;
}

export interface PrivateRedis {
  port: number;
  url: string;
  /** With tls: the certificate a client must trust (NODE_EXTRA_CA_CERTS for a node process). */
  caFile: string | null;
  /** The running redis-server's pid (null while it is down). */
  readonly pid: number | null;
  /** A client for the caller itself (inspecting keys, INFO), closed by stop(). */
  client(): Redis;
  /** SIGKILL: no shutdown, no save, as a crash or a cut cable looks to the nodes. */
  kill(): Promise<void>;
  /** Starts it again on the same port and directory (its append-only file, if on, brings the data back). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export interface PrivateRedisOptions {
  /** appendonly yes + appendfsync always: every write on disk before Redis answers. */
  durable?: boolean;
  /** requirepass: the url carries it (`redis://:PASSWORD@...`). */
  password?: string;
  /** TLS only (a self-signed certificate for 127.0.0.1 made with openssl): the url is rediss://, `caFile` the certificate to trust. */
  tls?: boolean;
  /** Put before the command, e.g. ['taskset', '-c', '0']. */
  prefix?: string[];
}

export async function startPrivateRedis(options: PrivateRedisOptions = {}): Promise<PrivateRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'ocs-redis-'));
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--daemonize', 'no', '--loglevel', 'warning'];
  args.push(...(options.durable ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']));
  if (options.password) args.push('--requirepass', options.password);
  let caFile: string | null = null;
  if (options.tls) {
    const { certFile, keyFile: key } = selfSigned(undefined, dir);
    caFile = certFile;
    args[1] = '0'; // no plain port
    args.push('--tls-port', String(port), '--tls-cert-file', caFile, '--tls-key-file', key, '--tls-ca-cert-file', caFile, '--tls-auth-clients', 'no');
  }
  const connection = { host: '127.0.0.1', port, ...(options.password ? { password: options.password } : {}), ...(caFile ? { tls: { ca: readFileSync(caFile) } } : {}) };
  const argv = [...(options.prefix ?? []), REDIS_SERVER, ...args];
  let child: ChildProcess | null = null;
  const clients: Redis[] = [];
  const launch = async (): Promise<void> => {
    child = spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' });
    await waitForPing(connection);
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
    url: `${options.tls ? 'rediss' : 'redis'}://${options.password ? `:${encodeURIComponent(options.password)}@` : ''}127.0.0.1:${port}`,
    caFile,
    get pid() {
      return (child as ChildProcess | null)?.pid ?? null;
    },
    client: () => {
      const client = new Redis({ ...connection, maxRetriesPerRequest: 1, retryStrategy: () => 100 });
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

async function waitForPing(connection: RedisOptions): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const client = new Redis({ ...connection, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
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
  throw new Error(`redis-server on port ${connection.port} did not answer within 10 s`);
}


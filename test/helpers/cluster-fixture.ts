/**
 * The set-up most cluster tests share: a private Redis, a TCP proxy in front of it when a node
 * must be cut off from it, nodes on either (processes, or one in this process), and a client of
 * the test's own. Call `clusterFixture` inside a `describe`: it registers that describe's
 * `before` (starts them, in the order given) and `after` (closes the clients in `open`, ends the
 * node processes still running, closes the nodes in this process, quits the client, closes the
 * proxy, stops Redis), and returns the handle that `before` fills in: read its fields inside the
 * tests, not where the describe is declared (`nodes` and `open` are the same object throughout).
 */
import { after, before } from 'node:test';
import type { Redis } from 'ioredis';
import type { RunningServer } from '../../src/index.js';
import type { TestClient } from './client.js';
import { nodeConfig, startPrivateRedis, type PrivateRedis } from './redis.js';
import { startInProcess, startProcess, type ServerProcess } from './server.js';
import { tcpProxy, type TcpProxy } from './tcp-proxy.js';

/**
 * A node configured by nodeConfig(url, prefix, shards, extra), or by `config(url)`; the url is
 * Redis's own or the proxy's.
 */
export type ClusterNodeSpec = (
  | { prefix: string; shards?: number; extra?: Record<string, unknown> }
  | { config: (redisUrl: string) => Record<string, unknown> }
) & {
  /** Reaches Redis through the fixture's proxy, which the test can cut, freeze or slow. */
  throughProxy?: boolean;
  /** Runs in the test's own process (startInProcess), not as a node process (startProcess). */
  inProcess?: boolean;
};

/** The nodes by name, or in a list (then `nodes` is a list too). */
type ClusterNodeSpecs = Record<string, ClusterNodeSpec> | readonly ClusterNodeSpec[];

type NodeOf<Spec> = Spec extends { inProcess: true } ? RunningServer : ServerProcess;

export interface ClusterFixtureOptions<Specs extends ClusterNodeSpecs> {
  /** The nodes, started one after another in this order. */
  nodes?: Specs;
  /** Opens `store`, a client of Redis for the test itself. */
  store?: boolean;
  /**
   * How `after` ends the node processes still running: 'kill' (the default) SIGKILLs them one
   * after another, 'graceful' stops them all at once with SIGTERM (`node.stop()`).
   */
  stop?: 'kill' | 'graceful';
}

export interface ClusterFixture<Specs extends ClusterNodeSpecs> {
  redis: PrivateRedis;
  /** In front of Redis when a node goes through it (unset otherwise). */
  proxy: TcpProxy;
  nodes: { -readonly [Name in keyof Specs]: NodeOf<Specs[Name]> };
  /** With `store: true` (unset otherwise). */
  store: Redis;
  /** Clients the test opened: `after` closes them first. */
  open: TestClient[];
}

export function clusterFixture<const Specs extends ClusterNodeSpecs = Record<never, ClusterNodeSpec>>(options: ClusterFixtureOptions<Specs>): ClusterFixture<Specs> {
  const specs = Object.entries(options.nodes ?? {}) as Array<[string, ClusterNodeSpec]>;
  const cluster = { nodes: Array.isArray(options.nodes) ? [] : {}, open: [] as TestClient[] } as unknown as ClusterFixture<Specs>;
  const processes: ServerProcess[] = [];
  const inProcess: RunningServer[] = [];
  let proxy: TcpProxy | undefined;
  let store: Redis | undefined;
  before(async () => {
    cluster.redis = await startPrivateRedis();
    if (specs.some(([, spec]) => spec.throughProxy)) cluster.proxy = proxy = await tcpProxy(cluster.redis.port);
    for (const [name, spec] of specs) {
      const url = spec.throughProxy ? `redis://127.0.0.1:${cluster.proxy.port}` : cluster.redis.url;
      const config = 'config' in spec ? spec.config(url) : nodeConfig(url, spec.prefix, spec.shards ?? 1, spec.extra ?? {});
      const node = spec.inProcess ? await startInProcess(config) : await startProcess(config);
      if ('child' in node) processes.push(node);
      else inProcess.push(node);
      (cluster.nodes as Record<string, RunningServer | ServerProcess>)[name] = node;
    }
    if (options.store) cluster.store = store = cluster.redis.client();
  });
  after(async () => {
    for (const client of cluster.open) client.close();
    if (options.stop === 'graceful') await Promise.all(processes.map((node) => node.stop()));
    else for (const node of processes) if (node.child.exitCode === null) await node.stop('SIGKILL');
    for (const node of inProcess) await node.close();
    await store?.quit();
    await proxy?.close();
    await cluster.redis?.stop();
  });
  return cluster;
}

/**
 * The set-up most cluster tests share: a private Redis, a TCP proxy in front of it when a node
 * must be cut off from it, nodes on either (processes, or one in this process), and a client of
 * the test's own. Call `clusterFixture` inside a `describe`: it registers that describe's
 * `before` (starts them, in the order given) and `after` (SIGKILLs the node processes still
 * running, closes the nodes in this process, quits the client, closes the proxy, stops Redis),
 * and returns the handle that `before` fills in: read its fields inside the tests, not where the
 * describe is declared.
 */
import { after, before } from 'node:test';
import type { Redis } from 'ioredis';
import type { RunningServer } from '../../src/index.js';
import { nodeConfig, startPrivateRedis, type PrivateRedis } from './redis.js';
import { startInProcess, startProcess, type ServerProcess } from './server.js';
import { tcpProxy, type TcpProxy } from './tcp-proxy.js';

/** A node configured by nodeConfig(url, prefix, shards, extra), the url Redis's own or the proxy's. */
export interface ClusterNodeSpec {
  prefix: string;
  shards?: number;
  extra?: Record<string, unknown>;
  /** Reaches Redis through the fixture's proxy, which the test can cut, freeze or slow. */
  throughProxy?: boolean;
  /** Runs in the test's own process (startInProcess), not as a node process (startProcess). */
  inProcess?: boolean;
}

type NodeOf<Spec extends ClusterNodeSpec> = Spec extends { inProcess: true } ? RunningServer : ServerProcess;

export interface ClusterFixtureOptions<Specs extends Record<string, ClusterNodeSpec>> {
  /** The nodes by name, started one after another in this order. */
  nodes?: Specs;
  /** Opens `store`, a client of Redis for the test itself. */
  store?: boolean;
}

export interface ClusterFixture<Specs extends Record<string, ClusterNodeSpec>> {
  redis: PrivateRedis;
  /** In front of Redis when a node goes through it (unset otherwise). */
  proxy: TcpProxy;
  nodes: { [Name in keyof Specs]: NodeOf<Specs[Name]> };
  /** With `store: true` (unset otherwise). */
  store: Redis;
}

export function clusterFixture<const Specs extends Record<string, ClusterNodeSpec> = Record<never, ClusterNodeSpec>>(options: ClusterFixtureOptions<Specs>): ClusterFixture<Specs> {
  const specs = Object.entries(options.nodes ?? {}) as Array<[keyof Specs, ClusterNodeSpec]>;
  const cluster = { nodes: {} } as ClusterFixture<Specs>;
  const processes: ServerProcess[] = [];
  const inProcess: RunningServer[] = [];
  let proxy: TcpProxy | undefined;
  let store: Redis | undefined;
  before(async () => {
    cluster.redis = await startPrivateRedis();
    if (specs.some(([, spec]) => spec.throughProxy)) cluster.proxy = proxy = await tcpProxy(cluster.redis.port);
    for (const [name, spec] of specs) {
      const url = spec.throughProxy ? `redis://127.0.0.1:${cluster.proxy.port}` : cluster.redis.url;
      const config = nodeConfig(url, spec.prefix, spec.shards ?? 1, spec.extra ?? {});
      const node = spec.inProcess ? await startInProcess(config) : await startProcess(config);
      if ('child' in node) processes.push(node);
      else inProcess.push(node);
      (cluster.nodes as Record<keyof Specs, RunningServer | ServerProcess>)[name] = node;
    }
    if (options.store) cluster.store = store = cluster.redis.client();
  });
  after(async () => {
    for (const node of processes) if (node.child.exitCode === null) await node.stop('SIGKILL');
    for (const node of inProcess) await node.close();
    await store?.quit();
    await proxy?.close();
    await cluster.redis?.stop();
  });
  return cluster;
}

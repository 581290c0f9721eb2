// The cluster broadcast benchmark: the broadcast load of bench:broadcast (2,000 connections in 20
// groups by default) against one process on its LMDB store (`single`), then against a cluster of
// 1, 2 and 3 nodes on one private redis-server, the connections spread over the nodes in turn (so
// every group has members on every node). All servers (nodes and Redis) run on CPU 0, the
// generator on CPU 1. Per target, repeated: CPU per delivery of the servers and Redis together,
// latency P50/P99, and Redis commands per published message (from INFO over the window).
// Prints one JSON document on stdout (progress on stderr).
// Usage: npm run bench:cluster -- [--repeat 3] [--targets single,cluster1,cluster2,cluster3]
//        [--connections 2000] [--groups 20] [--publishers 20] [--rate 500] [--duration 10]
//        [--warmup 30] [--drain 5] [--json-out FILE]
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { cpus, tmpdir } from 'node:os';
import type { Redis } from 'ioredis';
import { makePlan, type BroadcastPlan } from './lib/broadcast-plan.js';
import { LOAD_OPTIONS, loadShape } from './lib/broadcast-options.js';
import { runBroadcastLoad } from './lib/broadcast-load.js';
import type { LoadResult } from './lib/broadcast-load-types.js';
import { pinningReport, reexecPinnedGenerator, serverPinPrefix } from './lib/pinning.js';
import { harnessConfig, writeConfigFile } from '../lib/server-config.js';
import { SERVER_MAIN, startServer, type ServerProcess } from '../lib/server-process.js';
import { redisServerAvailable, startPrivateRedis, type PrivateRedis } from '../lib/redis-server.js';
import { fetchServerStats } from '../loadtest/server-stats.js';
import { toolArgs } from '../lib/cli.js';

const TARGETS = ['single', 'cluster1', 'cluster2', 'cluster3'] as const;
type Target = (typeof TARGETS)[number];
const log = (line: string): void => void process.stderr.write(`${line}\n`);

const values = toolArgs({
  command: 'npm run bench:cluster --',
  about: "bench:broadcast's load against one process on its LMDB store, then a cluster of 1, 2 and 3 nodes on a private redis-server: CPU per delivery of the servers and Redis together, P50/P99, Redis commands per pub. JSON on stdout.",
  options: {
    repeat: { type: 'int', default: 3, min: 1, help: 'repetitions; the summary gives the median and spread' },
    targets: { type: 'names', known: TARGETS, default: TARGETS.join(','), help: 'single process or cluster of N nodes' },
    ...LOAD_OPTIONS,
    drain: { ...LOAD_OPTIONS.drain, default: 5 },
    'json-out': { type: 'string', value: 'FILE', help: 'also write the JSON result to FILE' },
  },
});
const targets: Target[] = values.targets;
if (targets.some((t) => t !== 'single') && !redisServerAvailable()) {
  console.error('bench:cluster needs redis-server (apt-get install -y redis-server)');
  process.exit(2);
}
reexecPinnedGenerator();

const plan = makePlan(loadShape(values));
const repeat = values.repeat;
const pinning = pinningReport();
log(`cluster broadcast: ${plan.connections} connections, ${plan.groups} groups, ${plan.rate} pub/s, ${plan.durationS} s x ${repeat} per target`);

interface Run {
  /** Pubs the generator sent in the window, and those the nodes handled in it (their /stats). */
  pubsSent: number;
  pubsHandled: number;
  cpuUsPerDelivery: number;
  serverCores: number;
  p50Ms: number;
  p99Ms: number;
  lost: number;
  duplicates: number;
  /** Redis commands over the window, per measured pub; and PUBLISH alone per pub. */
  redisCommandsPerPub: number | null;
  redisPublishesPerPub: number | null;
  /** Commands other than PUBLISH per second of the window: presence heartbeats and the store's sweeps, whatever the load. */
  redisBackgroundPerSecond: number | null;
  otherProcessesCores: number;
  connectionsPerNode: number[];
}

const runs: Record<string, Run[]> = {};
for (let r = 0; r < repeat; r++) {
  for (const target of targets) {
    log(`[${target}] run ${r + 1}/${repeat}`);
    try {
      (runs[target] ??= []).push(await runTarget(target, plan));
      const last = runs[target]!.at(-1)!;
      log(`[${target}] ${last.cpuUsPerDelivery} µs/delivery, P50 ${last.p50Ms} P99 ${last.p99Ms} ms, lost ${last.lost}, Redis ${last.redisCommandsPerPub ?? '-'} commands/pub`);
    } catch (err) {
      log(`[${target}] error: ${(err as Error).message}`);
    }
  }
}

const summary = Object.fromEntries(
  Object.entries(runs).map(([target, list]) => [
    target,
    {
      runs: list.length,
      cpuUsPerDelivery: spread(list.map((x) => x.cpuUsPerDelivery)),
      p50Ms: spread(list.map((x) => x.p50Ms)),
      p99Ms: spread(list.map((x) => x.p99Ms)),
      redisCommandsPerPub: list[0]?.redisCommandsPerPub === null ? null : spread(list.map((x) => x.redisCommandsPerPub!)),
      redisPublishesPerPub: list[0]?.redisPublishesPerPub === null ? null : spread(list.map((x) => x.redisPublishesPerPub!)),
      redisBackgroundPerSecond: list[0]?.redisBackgroundPerSecond === null ? null : spread(list.map((x) => x.redisBackgroundPerSecond!)),
      lost: list.reduce((sum, x) => sum + x.lost, 0),
      duplicates: list.reduce((sum, x) => sum + x.duplicates, 0),
      otherProcessesCores: spread(list.map((x) => x.otherProcessesCores)),
    },
  ]),
);
const report = {
  benchmark: 'cluster-broadcast',
  startedAt: new Date().toISOString(),
  config: { connections: plan.connections, groups: plan.groups, publishers: plan.publishers, rate: plan.rate, durationS: plan.durationS, warmupS: plan.warmupS, repeat },
  environment: { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '', pinning },
  summary,
  runs,
};
const json = JSON.stringify(report, null, 2);
console.log(json);
if (values['json-out']) {
  mkdirSync(dirname(values['json-out']), { recursive: true });
  writeFileSync(values['json-out'], json + '\n');
}

function spread(values: number[]): { median: number; min: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median: round(median), min: round(sorted[0]!), max: round(sorted.at(-1)!) };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

async function runTarget(target: Target, plan: BroadcastPlan): Promise<Run> {
  const nodes = target === 'single' ? 1 : Number(target.slice('cluster'.length));
  const pin = serverPinPrefix();
  let redis: PrivateRedis | null = null;
  const servers: ServerProcess[] = [];
  const configs: Array<{ remove(): void }> = [];
  // `single` only (a node keeps its messages in Redis): a store nobody else uses.
  const dataDir = mkdtempSync(join(tmpdir(), 'ocs-bench-store-'));
  try {
    if (target !== 'single') redis = await startPrivateRedis({ prefix: pin });
    for (let i = 0; i < nodes; i++) {
      const config = writeConfigFile(
        harnessConfig({
          websocket: { server: { shards: 1, max_connections: plan.connections * 2 } },
          ...(redis ? { cluster: { redis_url: redis.url } } : {}),
          store: { data_dir: dataDir, sync: 'none' },
        }),
      );
      configs.push(config);
      servers.push(await startServer([...pin, process.execPath, SERVER_MAIN, '--config', config.file]));
    }
    const client: Redis | null = redis ? redis.client() : null;
    let before: Map<string, number> | null = null;
    let after: Map<string, number> | null = null;
    let startInfo: Promise<Map<string, number>> | null = null;
    // Pubs the nodes handled over the window (a busy machine may leave some of the generator's unhandled at its end).
    const pubsHandled = async (): Promise<number> => {
      let sum = 0;
      for (const server of servers) {
        const stats = await fetchServerStats('127.0.0.1', server.port, 10_000);
        sum += (stats.raw as { totals?: { pubs?: number } } | undefined)?.totals?.pubs ?? 0;
      }
      return sum;
    };
    let pubsAtStart: Promise<number> | null = null;
    let handled = 0;
    const load: LoadResult = await runBroadcastLoad(
      plan,
      {
        host: '127.0.0.1',
        port: servers[0]!.port,
        portFor: (c) => servers[c % servers.length]!.port,
        pathFor: (user) => `/ws?user=${encodeURIComponent(user)}`,
        serverPid: servers[0]!.pid,
        otherPids: [...servers.slice(1).map((s) => s.pid), ...(redis?.pid ? [redis.pid] : [])],
        shards: 1,
      },
      {
        connectConcurrency: 200,
        drainS: values.drain,
        verifyEvery: 0,
        placement: 'spread',
        serverCpu: pinning.serverCpu,
        generatorCpu: pinning.generatorCpu,
        log,
        onWindow: async (edge) => {
          if (edge === 'warmup') return;
          if (edge === 'start') {
            startInfo = client ? commandStats(client) : null;
            pubsAtStart = pubsHandled();
            return;
          }
          if (client && startInfo) {
            before = await startInfo;
            after = await commandStats(client);
          }
          handled = (await pubsHandled()) - (await pubsAtStart!);
        },
      },
    );
    const pubs = handled > 0 ? handled : load.pubsMeasured;
    const delta = (name: string): number | null => (before && after ? (after.get(name) ?? 0) - (before.get(name) ?? 0) : null);
    const total = delta('*');
    const publishes = delta('publish');
    return {
      pubsSent: load.pubsMeasured,
      pubsHandled: handled,
      cpuUsPerDelivery: load.serverCpu.cpuUsPerDelivery,
      serverCores: load.serverCpu.cores,
      p50Ms: load.latencyMs.p50,
      p99Ms: load.latencyMs.p99,
      lost: load.lostDeliveries,
      duplicates: load.duplicateDeliveries,
      // Less the two INFO commands this benchmark sends itself.
      redisCommandsPerPub: total === null ? null : round((total - 2) / pubs),
      redisPublishesPerPub: publishes === null ? null : round(publishes / pubs),
      redisBackgroundPerSecond: total === null || publishes === null ? null : round((total - 2 - publishes) / (load.windowMs / 1000)),
      otherProcessesCores: load.otherProcessesCores,
      connectionsPerNode: servers.map((_, i) => Math.ceil((plan.connections - i) / servers.length)),
    };
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    await redis?.stop();
    for (const config of configs) config.remove();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Calls per command (and '*': all), from INFO commandstats. */
async function commandStats(client: Redis): Promise<Map<string, number>> {
  const text = await client.info('commandstats');
  const calls = new Map<string, number>();
  let total = 0;
  for (const match of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    calls.set(match[1]!, Number(match[2]));
    total += Number(match[2]);
  }
  calls.set('*', total);
  return calls;
}

// The broadcast benchmark: the same fan-out load, in one run, against the single-threaded
// baseline server (tools/bench/baseline-server.ts) and the real server with 1 and 2 shards. Prints
// one JSON document on stdout (progress on stderr); see tools/bench/README.md for its fields.
// Usage: npm run bench:broadcast -- [--connections 2000] [--groups 20] [--publishers 20]
//        [--rate 1000] [--duration 10] [--warmup 2] [--targets baseline,shards1,shards2]
//        [--placement spread|by-shard] [--json-out FILE]          (--help for all options)
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { cpus } from 'node:os';
import { makePlan, type BroadcastPlan } from './lib/broadcast-plan.js';
import { runBroadcastLoad } from './lib/broadcast-load.js';
import type { LoadResult } from './lib/broadcast-load-types.js';
import { parseCli, USAGE, type CliOptions } from './lib/broadcast-options.js';
import { prepareTarget, type TargetName } from './lib/broadcast-targets.js';
import { pinningReport, reexecPinnedGenerator } from './lib/pinning.js';
import { startServer } from '../lib/server-process.js';
import { fetchServerStats, type ServerStats } from '../loadtest/server-stats.js';

/** Targets every server must meet (the brief of this benchmark). */
const TARGETS = {
  maxLostDeliveries: 0,
  maxP99Ms: 5,
  /** CPU per delivery of a real-server target, relative to the baseline's. */
  maxCpuPerDeliveryVsBaseline: 1.2,
};

type TargetResult =
  | ({ target: TargetName; shardsRequested: number; shardsReported: unknown; serverExit: string; serverWarnings: string[]; ringRecordsPerPub: number | null } & LoadResult)
  | { target: TargetName; error: string };

const log = (line: string): void => void process.stderr.write(`${line}\n`);

let options: CliOptions;
try {
  options = parseCli(process.argv.slice(2));
} catch (err) {
  console.error(`${(err as Error).message}\n\n${USAGE}`);
  process.exit(2);
}
reexecPinnedGenerator(); // returns only in the pinned child, or when taskset is missing

const startedAt = new Date().toISOString();
const plan = makePlan(options);
const pinning = pinningReport();
log(
  `broadcast: ${plan.connections} connections, ${plan.groups} groups, ${plan.publishers} publishers, ` +
    `${plan.rate} pub/s, ${plan.warmupS} s warm-up + ${plan.durationS} s measured; ` +
    `${plan.expectedDeliveries} deliveries expected per target`,
);

const results: Partial<Record<TargetName, TargetResult>> = {};
for (const name of options.targets) {
  log(`[${name}] starting`);
  results[name] = await runTarget(name, plan, options);
  const r = results[name]!;
  log(
    'error' in r
      ? `[${name}] error: ${r.error}`
      : `[${name}] p99 ${r.latencyMs.p99} ms, lost ${r.lostDeliveries}, ${r.serverCpu.cpuUsPerDelivery} µs server CPU/delivery` +
          (r.generatorSaturated ? `; generator saturated: ${r.generator.saturatedBecause.join(', ')}` : '') +
          (r.disturbed ? `; disturbed: other processes used ${r.otherProcessesCores} cores` : ''),
  );
}

const judged = judge(results);
const report = {
  benchmark: 'broadcast',
  startedAt,
  config: {
    connections: plan.connections,
    groups: plan.groups,
    publishers: plan.publishers,
    rate: plan.rate,
    durationS: plan.durationS,
    warmupS: plan.warmupS,
    drainS: options.drainS,
    placement: options.placement,
    membersPerGroup: { min: Math.min(...plan.groupSize), max: Math.max(...plan.groupSize) },
    expectedDeliveries: plan.expectedDeliveries,
  },
  environment: { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '', pinning },
  targets: TARGETS,
  summary: Object.values(judged).map((r) =>
    'error' in r
      ? { target: r.target, error: r.error, pass: false }
      : {
          target: r.target,
          p99Ms: r.latencyMs.p99,
          lostDeliveries: r.lostDeliveries,
          cpuUsPerDelivery: r.serverCpu.cpuUsPerDelivery,
          cpuPerDeliveryVsBaseline: r.cpuPerDeliveryVsBaseline,
          ringRecordsPerPub: r.ringRecordsPerPub,
          generatorSaturated: r.generatorSaturated,
          disturbed: r.disturbed,
          pass: r.pass,
        },
  ),
  results: judged,
  // Every target asked for ran and met every check.
  pass: Object.values(judged).every((r) => r.pass),
};
const json = JSON.stringify(report, null, 2);
console.log(json);
if (options.jsonOut) {
  mkdirSync(dirname(options.jsonOut), { recursive: true });
  writeFileSync(options.jsonOut, json + '\n');
}

// ---------------------------------------------------------------------------------------

async function runTarget(name: TargetName, plan: BroadcastPlan, options: CliOptions): Promise<TargetResult> {
  let prepared;
  try {
    prepared = prepareTarget(name, plan.connections);
  } catch (err) {
    return { target: name, error: (err as Error).message };
  }
  try {
    const server = await startServer(prepared.argv);
    log(`[${name}] server pid ${server.pid} ready on port ${server.port}`);
    let load: LoadResult | Error;
    // The real server's own counters over the window: records its shards pushed over the rings per pub.
    let statsAtStart: Promise<ServerStats> | null = null;
    let ringRecordsPerPub: number | null = null;
    const window = {
      start: () => void (statsAtStart = name === 'baseline' ? null : fetchServerStats('127.0.0.1', server.port, 10_000)),
      stop: async () => {
        if (statsAtStart === null) return;
        const [a, b] = [totalsOf(await statsAtStart), totalsOf(await fetchServerStats('127.0.0.1', server.port, 10_000))];
        if (a && b && b.pubs > a.pubs) ringRecordsPerPub = Math.round(((b.ring_forwarded - a.ring_forwarded) / (b.pubs - a.pubs)) * 1000) / 1000;
      },
    };
    try {
      load = await runBroadcastLoad(
        plan,
        {
          host: '127.0.0.1',
          port: server.port,
          pathFor: (user) => `${prepared.endpoint}?user=${encodeURIComponent(user)}`,
          serverPid: server.pid,
          shards: prepared.shards,
        },
        {
          connectConcurrency: options.connectConcurrency,
          drainS: options.drainS,
          verifyEvery: options.verifyEvery,
          placement: options.placement,
          window,
          serverCpu: pinning.serverCpu,
          generatorCpu: pinning.generatorCpu,
          log,
        },
      );
    } catch (err) {
      load = err as Error;
    }
    const exit = await server.stop();
    if (load instanceof Error) throw load;
    return {
      target: name,
      shardsRequested: prepared.shards,
      shardsReported: server.ready.shards,
      serverExit: exit.signal ?? `code ${exit.code}`,
      serverWarnings: server.warnings,
      ringRecordsPerPub,
      ...load,
    };
  } catch (err) {
    return { target: name, error: (err as Error).message };
  } finally {
    prepared.cleanup();
  }
}

/** Adds the checks against TARGETS and the CPU ratio to the baseline to every result. */
function judge(results: Partial<Record<TargetName, TargetResult>>) {
  const baseline = results.baseline;
  const baselineCpu = baseline && !('error' in baseline) ? baseline.serverCpu.cpuUsPerDelivery : null;
  type Judged =
    | ({ target: TargetName; error: string } & { pass: false })
    | (Exclude<TargetResult, { error: string }> & {
        checks: Record<string, boolean | null>;
        cpuPerDeliveryVsBaseline: number | null;
        pass: boolean;
      });
  const judged: Record<string, Judged> = {};
  for (const [name, result] of Object.entries(results) as [TargetName, TargetResult][]) {
    if ('error' in result) {
      judged[name] = { target: result.target, error: result.error, pass: false };
      continue;
    }
    const ratio = baselineCpu ? Math.round((result.serverCpu.cpuUsPerDelivery / baselineCpu) * 1000) / 1000 : null;
    const checks = {
      noLostDeliveries: result.lostDeliveries <= TARGETS.maxLostDeliveries,
      p99WithinTarget: result.latencyMs.p99 <= TARGETS.maxP99Ms,
      // null: not applicable to the baseline itself, or no baseline in this run.
      cpuPerDeliveryWithinTarget: name === 'baseline' || ratio === null ? null : ratio <= TARGETS.maxCpuPerDeliveryVsBaseline,
    };
    judged[name] = {
      ...result,
      cpuPerDeliveryVsBaseline: name === 'baseline' ? 1 : ratio,
      checks,
      pass: Object.values(checks).every((ok) => ok !== false),
    };
  }
  return judged;
}

/** The counters routing by interest shows in, from a /stats answer. */
function totalsOf(stats: ServerStats): { pubs: number; ring_forwarded: number } | null {
  const totals = stats.available ? (stats.raw as { totals?: { pubs?: number; ring_forwarded?: number } }).totals : undefined;
  return totals && typeof totals.pubs === 'number' && typeof totals.ring_forwarded === 'number' ? { pubs: totals.pubs, ring_forwarded: totals.ring_forwarded } : null;
}

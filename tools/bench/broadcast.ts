// The broadcast benchmark: the same fan-out load, in one run, against the single-threaded
// baseline server (tools/bench/baseline-server.ts) and the real server with 1 and 2 shards,
// repeated (--repeat, default 3) with the median and spread of every figure. Prints one JSON
// document on stdout (progress on stderr); see tools/bench/README.md for its fields.
// Usage: npm run bench:broadcast -- [--connections 2000] [--groups 20] [--publishers 20]
//        [--rate 500] [--duration 10] [--warmup 30] [--repeat 3] [--trace-gc]
//        [--targets baseline,shards1,shards2] [--placement spread|by-shard] [--json-out FILE]
//        (--help for all options)
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { cpus } from 'node:os';
import { makePlan, type BroadcastPlan } from './lib/broadcast-plan.js';
import { runBroadcastLoad } from './lib/broadcast-load.js';
import type { LoadResult } from './lib/broadcast-load-types.js';
import { parseCli, type CliOptions } from './lib/broadcast-options.js';
import { isBaseline, placementOf, prepareTarget, SCRAPED_TARGETS, usesTls, type TargetName } from './lib/broadcast-targets.js';
import { pinningReport, reexecPinnedGenerator } from './lib/pinning.js';
import { startServer } from '../lib/server-process.js';
import { fetchServerStats, type ServerStats } from '../loadtest/server-stats.js';
import { GcTrace } from './lib/gc-trace.js';
import { isNoisy, measureHostNoise } from './lib/host-noise.js';
import { ServerProbe } from './lib/server-probe.js';
import { SchedTrace, type SchedReport } from './lib/sched-trace.js';
import { rotation, summarizeRepetitions, TARGETS, type Repetition, type RunResult } from './lib/repetitions.js';
import { warmFetch } from '../lib/warm-fetch.js';

type TargetResult = RunResult;

const log = (line: string): void => void process.stderr.write(`${line}\n`);

const options: CliOptions = parseCli();
reexecPinnedGenerator(); // returns only in the pinned child, or when taskset is missing
await warmFetch(); // before any load: the window's /stats reads must not compile undici mid-window

const startedAt = new Date().toISOString();
const plan = makePlan(options);
const pinning = pinningReport();
log(
  `broadcast: ${plan.connections} connections, ${plan.groups} groups, ${plan.publishers} publishers, ` +
    `${plan.rate} pub/s, ${plan.warmupS} s warm-up + ${plan.durationS} s measured; ` +
    `${plan.expectedDeliveries} deliveries expected per target`,
);

const repetitions: Repetition[] = [];
for (let rep = 0; rep < options.repeat; rep++) {
  const results: Repetition = {};
  for (const name of rotation(options.targets, rep)) {
    log(`[${rep + 1}/${options.repeat} ${name}] starting`);
    const r = (results[name] = await runTarget(name, plan, options));
    log(
      'error' in r
        ? `[${name}] error: ${r.error}`
        : `[${name}] p99 ${r.latencyMs.p99} ms, max ${r.latencyMs.max} ms, lost ${r.lostDeliveries}, ${r.serverCpu.cpuUsPerDelivery} µs server CPU/delivery` +
            (r.generatorSaturated ? `; generator saturated: ${r.generator.saturatedBecause.join(', ')}` : '') +
            (r.generator.slippedBecause ? `; ${r.generator.slippedBecause}` : '') +
            (r.disturbed ? `; disturbed: other processes used ${r.otherProcessesCores} cores` : '') +
            (r.hostNoisy ? `; host took ${r.hostNoise.map((n) => `${n.lostPct}%`).join(' / ')} of the cores' time` : '') +
            (r.sched ? `; ${schedLine(r.sched)}` : ''),
    );
  }
  repetitions.push(results);
}

const summary = summarizeRepetitions(options.targets, repetitions);
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
    repeat: options.repeat,
    membersPerGroup: { min: Math.min(...plan.groupSize), max: Math.max(...plan.groupSize) },
    expectedDeliveries: plan.expectedDeliveries,
  },
  environment: { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '', pinning },
  targets: TARGETS,
  // Per target: the median and spread (min, max) over the repetitions, and the checks.
  summary,
  repetitions,
  // Every target ran in every repetition and met every check on the medians.
  pass: summary.every((s) => s.pass),
};
const json = JSON.stringify(report, null, 2);
console.log(json);
if (options.jsonOut) {
  mkdirSync(dirname(options.jsonOut), { recursive: true });
  writeFileSync(options.jsonOut, json + '\n');
}
for (const s of summary) {
  const f = (x: { median: number; min: number; max: number } | null): string => (x ? `${x.median} [${x.min}..${x.max}]` : '-');
  log(
    `${s.target}: p99 ${f(s.p99Ms)} ms (x${f(s.p99VsBaseline)}), max ${f(s.maxMs)} ms (x${f(s.maxVsBaseline)}), ` +
      `cpu ${f(s.cpuUsPerDelivery)} µs (x${f(s.cpuVsBaseline)}), lost ${s.lostDeliveries}, saturated ${s.saturatedRuns}/${s.runs}, slipped ${s.slippedRuns}/${s.runs}, ` +
      `disturbed ${s.disturbedRuns}/${s.runs}, host-noisy ${s.hostNoisyRuns}/${s.runs}` +
      (s.eventLoopP99Ms ? `, server event-loop P99 ${f(s.eventLoopP99Ms)} ms` : '') +
      (s.connectCpuUsPerConnection ? `, connecting ${f(s.connectCpuUsPerConnection)} µs CPU per connection` : '') +
      (s.vsBaselinePings ? `; against baseline-pings: p99 x${f(s.vsBaselinePings.p99)}, max x${f(s.vsBaselinePings.max)}, cpu x${f(s.vsBaselinePings.cpu)}` : '') +
      (s.vsBaselineTls ? `; against baseline-tls: p99 x${f(s.vsBaselineTls.p99)}, max x${f(s.vsBaselineTls.max)}, cpu x${f(s.vsBaselineTls.cpu)}` : '') +
      (s.vsShards1?.metricsCpuCost ? `, metrics cost x${f(s.vsShards1.metricsCpuCost)} CPU` : '') +
      (s.vsShards1?.eventLoopP99 ? `, event-loop P99 x${f(s.vsShards1.eventLoopP99)} of shards1's` : '') +
      (s.sched ? `, waits to run over 0.2 ms ${f(s.sched.longWaitsPerS)}/s, ${f(s.sched.longWaitMsPerS)} ms/s` : '') +
      `: ${s.pass ? 'pass' : 'FAIL'}`,
  );
}

// ---------------------------------------------------------------------------------------

async function runTarget(name: TargetName, plan: BroadcastPlan, options: CliOptions): Promise<TargetResult> {
  let prepared;
  try {
    prepared = prepareTarget(name, plan.connections, [...(options.traceGc ? ['--trace-gc-nvp'] : []), ...options.serverNodeArgs]);
  } catch (err) {
    return { target: name, error: (err as Error).message };
  }
  try {
    // Before the server starts: the probe must not compete with it.
    const hostNoise = options.noiseProbeS > 0 ? await measureHostNoise([pinning.serverCpu ?? '0', pinning.generatorCpu ?? '1'], options.noiseProbeS * 1000) : [];
    const gc = new GcTrace(Date.now());
    const server = await startServer(prepared.argv, options.traceGc ? { onLine: (line) => void gc.onLine(line) } : {});
    log(`[${name}] server pid ${server.pid} ready on port ${server.port}`);
    let load: LoadResult | Error;
    // The baseline has no metrics, and metrics-off has them turned off; a TLS target's are https://, not read.
    const probe = isBaseline(name) || name === 'metrics-off' || usesTls(name) ? null : new ServerProbe('127.0.0.1', server.port, SCRAPED_TARGETS.includes(name));
    // The real server's own counters over the window: records its shards pushed over the rings per pub.
    let statsAtStart: Promise<ServerStats> | null = null;
    // Set by onWindow: typed wide, so that the checks after the load are not narrowed to its initial null.
    let sched = null as SchedTrace | string | null;
    let ringRecordsPerPub: number | null = null;
    const onWindow = async (edge: 'warmup' | 'start' | 'end'): Promise<void> => {
      probe?.onWindow(edge);
      if (edge === 'warmup') return;
      if (edge === 'start' && options.sched) sched = SchedTrace.start(plan.durationS);
      if (isBaseline(name) || usesTls(name)) return;
      if (edge === 'start') {
        statsAtStart = fetchServerStats('127.0.0.1', server.port, 10_000);
        return;
      }
      if (statsAtStart === null) return;
      const [a, b] = [totalsOf(await statsAtStart), totalsOf(await fetchServerStats('127.0.0.1', server.port, 10_000))];
      if (a && b && b.pubs > a.pubs) ringRecordsPerPub = Math.round(((b.ring_forwarded - a.ring_forwarded) / (b.pubs - a.pubs)) * 1000) / 1000;
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
          ...(prepared.ca ? { tls: { ca: prepared.ca } } : {}),
        },
        {
          connectConcurrency: options.connectConcurrency,
          drainS: options.drainS,
          verifyEvery: options.verifyEvery,
          placement: placementOf(name, options.placement),
          serverCpu: pinning.serverCpu,
          generatorCpu: pinning.generatorCpu,
          log,
          onWindow,
        },
      );
    } catch (err) {
      load = err as Error;
    }
    const serverProbe = probe ? await probe.result() : undefined;
    const schedReport: SchedReport | null =
      sched === null ? null : typeof sched === 'string' ? { available: false, reason: sched } : await sched.result(server.pid, process.pid);
    const exit = await server.stop();
    if (load instanceof Error) throw load;
    return {
      target: name,
      shardsRequested: prepared.shards,
      shardsReported: server.ready.shards,
      serverExit: exit.signal ?? `code ${exit.code}`,
      serverWarnings: server.warnings,
      ringRecordsPerPub,
      hostNoise,
      hostNoisy: isNoisy(hostNoise),
      ...load,
      ...(serverProbe ? { server: serverProbe } : {}),
      ...(schedReport ? { sched: schedReport } : {}),
      ...(options.traceGc ? { gc: gcReport(gc, load) } : {}),
    };
  } catch (err) {
    return { target: name, error: (err as Error).message };
  } finally {
    prepared.cleanup();
  }
}

/** The progress line's account of a run's scheduler events. */
function schedLine(s: SchedReport): string {
  if (!s.available) return `no scheduler events: ${s.reason}`;
  const top = Object.entries(s.ranInsteadMs)
    .slice(0, 4)
    .map(([who, ms]) => `${who} ${ms}`)
    .join(', ');
  return `its thread waited over ${s.longWaits.thresholdMs} ms to run ${s.longWaits.perS}/s (${s.longWaits.totalMs} ms in all; ran instead, ms: ${top}); it ran ${s.runsPerS} times/s`;
}

/** The collections in the measured window (with bytes allocated per delivery) and in the whole run. */
function gcReport(gc: GcTrace, load: LoadResult) {
  const window = gc.summarize(...load.windowEpochMs);
  const deliveries = Math.max(1, load.receivedDeliveries);
  return {
    window: {
      ...window,
      isolates: window.isolates.map((i) => ({ ...i, allocatedBytesPerDelivery: Math.round((i.allocatedBytes / deliveries) * 10) / 10 })),
    },
    run: gc.summarize(),
  };
}

/** The counters routing by interest shows in, from a /stats answer. */
function totalsOf(stats: ServerStats): { pubs: number; ring_forwarded: number } | null {
  const totals = stats.available ? (stats.raw as { totals?: { pubs?: number; ring_forwarded?: number } }).totals : undefined;
  return totals && typeof totals.pubs === 'number' && typeof totals.ring_forwarded === 'number' ? { pubs: totals.pubs, ring_forwarded: totals.ring_forwarded } : null;
}

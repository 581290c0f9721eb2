// Repeated runs of the broadcast benchmark, reduced to a median and a spread per figure. One run
// on a shared VM can be off by 2-3x in the tail, so a claim rests on the median of several
// repetitions, each of which ran the baseline and the real server back to back, and every
// ratio to the baseline is taken within one repetition before the median is taken.
import type { SchedReport } from './sched-trace.js';
import type { LoadResult } from './broadcast-load-types.js';
import { isBaseline, usesTls, type TargetName } from './broadcast-targets.js';
import type { CoreNoise } from './host-noise.js';
import type { ServerProbeResult } from './server-probe.js';

/** Targets a real-server target must meet, judged on the medians (issue 10's figures; shards2-by-shard: issue 15's). */
export const TARGETS = {
  maxLostDeliveries: 0,
  /** P99 and max latency relative to the uWS baseline of the same repetition. */
  maxP99VsBaseline: 1.3,
  maxMaxVsBaseline: 2,
  /** Server CPU per delivery relative to the baseline's, by target. */
  maxCpuVsBaseline: { shards1: 1.05, shards2: 1.15, 'shards2-by-shard': 1.1 } as Partial<Record<TargetName, number>>,
  /** What metrics collection may cost: shards1's CPU per delivery over metrics-off's. */
  maxMetricsCpuCost: 1.03,
};

export type RunResult =
  | ({ target: TargetName; shardsRequested: number; shardsReported: unknown; serverExit: string; serverWarnings: string[]; ringRecordsPerPub?: number | null; hostNoise: CoreNoise[]; hostNoisy: boolean; gc?: unknown; server?: ServerProbeResult; sched?: SchedReport } & LoadResult)
  | { target: TargetName; error: string };

export type Repetition = Partial<Record<TargetName, RunResult>>;
type RunOk = Exclude<RunResult, { error: string }>;

/** Median, lowest and highest of a figure over the repetitions that measured it. */
export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

export interface TargetSummary {
  target: TargetName;
  runs: number;
  errors: string[];
  p50Ms: Spread | null;
  p99Ms: Spread | null;
  p999Ms: Spread | null;
  maxMs: Spread | null;
  cpuUsPerDelivery: Spread | null;
  /** Ratios to the same repetition's baseline (null for the baseline itself or without one). */
  p99VsBaseline: Spread | null;
  maxVsBaseline: Spread | null;
  cpuVsBaseline: Spread | null;
  /**
   * The same ratios to the baseline that pings its connections as often as the real server
   * does, when baseline-pings ran too (null otherwise, and for the baselines).
   */
  vsBaselinePings: { p99: Spread | null; max: Spread | null; cpu: Spread | null } | null;
  /** A TLS target's ratios to baseline-tls (the uWS baseline on wss://), when it ran too. */
  vsBaselineTls: { p99: Spread | null; max: Spread | null; cpu: Spread | null } | null;
  /** The server's own event-loop delay over the window, merged over its threads (metrics on). */
  eventLoopP99Ms: Spread | null;
  eventLoopP999Ms: Spread | null;
  /** Server RSS per connection above the idle server's after the window, KiB. */
  memoryPerConnectionKiB: Spread | null;
  /** Server CPU per connection while the clients connected and joined, µs (LoadResult.connectCpuUsPerConnection). */
  connectCpuUsPerConnection: Spread | null;
  /** Records the shards pushed over the rings per pub (routing by interest: 0 when every group lives on one shard). */
  ringRecordsPerPub: Spread | null;
  /** With --sched: the busiest thread's waits to run over 0.2 ms, per second and ms per second, and how often it ran (sched-trace.ts). */
  sched: { longWaitsPerS: Spread | null; longWaitMsPerS: Spread | null; runsPerS: Spread | null } | null;
  /**
   * metrics-off: shards1's CPU per delivery over this target's, i.e. what metrics cost.
   * scrape: this target's event-loop P99 over shards1's, i.e. what a scrape a second costs.
   */
  vsShards1: { metricsCpuCost?: Spread | null; eventLoopP99?: Spread | null } | null;
  lostDeliveries: number;
  /** Repetitions in which the generator's CPU, not the server, may have limited latency. */
  saturatedRuns: number;
  /** Repetitions whose publish schedule slipped (LoadResult.scheduleSlipped), saturated or not. */
  slippedRuns: number;
  /** Repetitions during which other processes used the CPUs. */
  disturbedRuns: number;
  /** Repetitions before which the host took more than NOISY_PCT of a core's time (host-noise.ts). */
  hostNoisyRuns: number;
  checks: Record<string, boolean | null>;
  pass: boolean;
}

export function spread(values: number[]): Spread | null {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median: round3(median), min: round3(sorted[0]!), max: round3(sorted.at(-1)!), n: sorted.length };
}

/** Summarizes every target over the repetitions and judges it against TARGETS. */
export function summarizeRepetitions(targets: readonly TargetName[], repetitions: Repetition[]): TargetSummary[] {
  return targets.map((target) => {
    const ok: RunOk[] = [];
    const baselines: (RunOk | null)[] = [];
    const shards1s: (RunOk | null)[] = [];
    const pinging: (RunOk | null)[] = [];
    const tlsBaselines: (RunOk | null)[] = [];
    const errors: string[] = [];
    for (const rep of repetitions) {
      const run = rep[target];
      if (!run) continue;
      if ('error' in run) {
        errors.push(run.error);
        continue;
      }
      ok.push(run);
      const base = rep.baseline;
      baselines.push(base && !('error' in base) ? base : null);
      const one = rep.shards1;
      shards1s.push(one && !('error' in one) ? one : null);
      const pings = rep['baseline-pings'];
      pinging.push(pings && !('error' in pings) ? pings : null);
      const tlsBase = rep['baseline-tls'];
      tlsBaselines.push(tlsBase && !('error' in tlsBase) ? tlsBase : null);
    }
    // Within each repetition: pick(run) / pick(reference), for the runs that have a reference.
    const ratioTo = (refs: (RunOk | null)[], pick: (r: RunOk) => number | undefined, invert = false): Spread | null =>
      spread(
        ok.flatMap((run, i) => {
          const a = pick(run);
          const b = refs[i] ? pick(refs[i]!) : undefined;
          if (a === undefined || b === undefined || !(a > 0 && b > 0)) return [];
          return [invert ? b / a : a / b];
        }),
      );
    const ratio = (pick: (r: RunOk) => number): Spread | null => (target === 'baseline' ? null : ratioTo(baselines, pick));
    const eventLoop = (r: RunOk, key: 'p99Ms' | 'p999Ms'): number | undefined =>
      r.server?.window.available ? r.server.window.latencies.event_loop?.[key] : undefined;
    const summary = {
      target,
      runs: ok.length,
      errors,
      p50Ms: spread(ok.map((r) => r.latencyMs.p50)),
      p99Ms: spread(ok.map((r) => r.latencyMs.p99)),
      p999Ms: spread(ok.map((r) => r.latencyMs.p999)),
      maxMs: spread(ok.map((r) => r.latencyMs.max)),
      cpuUsPerDelivery: spread(ok.map((r) => r.serverCpu.cpuUsPerDelivery)),
      p99VsBaseline: ratio((r) => r.latencyMs.p99),
      maxVsBaseline: ratio((r) => r.latencyMs.max),
      cpuVsBaseline: ratio((r) => r.serverCpu.cpuUsPerDelivery),
      vsBaselinePings:
        isBaseline(target) || !pinging.some((r) => r !== null)
          ? null
          : {
              p99: ratioTo(pinging, (r) => r.latencyMs.p99),
              max: ratioTo(pinging, (r) => r.latencyMs.max),
              cpu: ratioTo(pinging, (r) => r.serverCpu.cpuUsPerDelivery),
            },
      vsBaselineTls:
        isBaseline(target) || !usesTls(target) || !tlsBaselines.some((r) => r !== null)
          ? null
          : {
              p99: ratioTo(tlsBaselines, (r) => r.latencyMs.p99),
              max: ratioTo(tlsBaselines, (r) => r.latencyMs.max),
              cpu: ratioTo(tlsBaselines, (r) => r.serverCpu.cpuUsPerDelivery),
            },
      eventLoopP99Ms: spread(ok.flatMap((r) => eventLoop(r, 'p99Ms') ?? [])),
      eventLoopP999Ms: spread(ok.flatMap((r) => eventLoop(r, 'p999Ms') ?? [])),
      memoryPerConnectionKiB: spread(ok.flatMap((r) => r.serverMemory?.perConnectionKiB.end ?? [])),
      connectCpuUsPerConnection: spread(ok.flatMap((r) => r.connectCpuUsPerConnection ?? [])),
      ringRecordsPerPub: spread(ok.flatMap((r) => r.ringRecordsPerPub ?? [])),
      sched: schedSummary(ok),
      vsShards1:
        target === 'metrics-off'
          ? { metricsCpuCost: ratioTo(shards1s, (r) => r.serverCpu.cpuUsPerDelivery, true) }
          : target === 'scrape'
            ? { eventLoopP99: ratioTo(shards1s, (r) => eventLoop(r, 'p99Ms')) }
            : null,
      lostDeliveries: ok.reduce((sum, r) => sum + r.lostDeliveries, 0),
      saturatedRuns: ok.filter((r) => r.generatorSaturated).length,
      slippedRuns: ok.filter((r) => r.scheduleSlipped).length,
      disturbedRuns: ok.filter((r) => r.disturbed).length,
      hostNoisyRuns: ok.filter((r) => r.hostNoisy).length,
    };
    const cpuLimit = TARGETS.maxCpuVsBaseline[target];
    // null: not applicable (a baseline; a TLS target, as the targets are for plain ws://) or not measured (no baseline in the run).
    const within = (s: Spread | null, limit: number | undefined): boolean | null =>
      isBaseline(target) || usesTls(target) || s === null || limit === undefined ? null : s.median <= limit;
    const checks = {
      ran: errors.length === 0 && ok.length > 0,
      noLostDeliveries: summary.lostDeliveries <= TARGETS.maxLostDeliveries,
      p99VsBaseline: within(summary.p99VsBaseline, TARGETS.maxP99VsBaseline),
      maxVsBaseline: within(summary.maxVsBaseline, TARGETS.maxMaxVsBaseline),
      cpuVsBaseline: within(summary.cpuVsBaseline, cpuLimit),
      metricsCpuCost: target === 'metrics-off' ? within(summary.vsShards1?.metricsCpuCost ?? null, TARGETS.maxMetricsCpuCost) : null,
    };
    return { ...summary, checks, pass: Object.values(checks).every((c) => c !== false) };
  });
}

function schedSummary(runs: RunOk[]): TargetSummary['sched'] {
  const read = runs.flatMap((r) => (r.sched?.available ? [r.sched] : []));
  if (read.length === 0) return null;
  return {
    longWaitsPerS: spread(read.map((s) => s.longWaits.perS)),
    longWaitMsPerS: spread(read.map((s) => s.longWaits.totalMs / s.seconds)),
    runsPerS: spread(read.map((s) => s.runsPerS)),
  };
}

/** The order targets run in repetition `rep`: rotated, so that no target always runs first. */
export function rotation<T>(items: readonly T[], rep: number): T[] {
  const k = items.length ? rep % items.length : 0;
  return [...items.slice(k), ...items.slice(0, k)];
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/**
 * How the broadcast benchmark turns repeated runs into figures: medians and spreads, ratios to
 * the baseline of the same repetition, and V8's --trace-gc-nvp lines into pauses per thread.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GcTrace } from '../tools/bench/lib/gc-trace.js';
import { rotation, spread, summarizeRepetitions, type Repetition, type RunResult } from '../tools/bench/lib/repetitions.js';
import type { LoadResult } from '../tools/bench/lib/broadcast-load-types.js';
import { summarizeSendRuns, type SendRun } from '../tools/bench/lib/send-summary.js';

function run(p99: number, cpu: number, extra: Partial<LoadResult> = {}): LoadResult {
  return {
    latencyMs: { count: 1, p50: p99 / 4, p95: p99 / 2, p99, p999: p99 * 2, max: p99 * 3, mean: p99 / 4 },
    serverCpu: { cpuUs: 0, cores: 0, cpuUsPerDelivery: cpu, core: null, byThreadUsPerDelivery: null },
    lostDeliveries: 0,
    generatorSaturated: false,
    scheduleSlipped: false,
    disturbed: false,
    ...extra,
  } as LoadResult;
}

const result = (target: 'baseline' | 'baseline-pings' | 'shards1', load: LoadResult): RunResult => ({
  target,
  shardsRequested: 1,
  shardsReported: 1,
  serverExit: 'code 0',
  serverWarnings: [],
  hostNoise: [],
  hostNoisy: false,
  ...load,
});

describe('benchmark repetitions', () => {
  it('the median of an even count is the mean of the middle two, and the spread is min and max', () => {
    assert.deepEqual(spread([4, 1, 3, 2]), { median: 2.5, min: 1, max: 4, n: 4 });
    assert.deepEqual(spread([5]), { median: 5, min: 5, max: 5, n: 1 });
    assert.equal(spread([]), null);
  });

  it('rotates the order of targets so that none always runs first', () => {
    assert.deepEqual(rotation(['a', 'b', 'c'], 0), ['a', 'b', 'c']);
    assert.deepEqual(rotation(['a', 'b', 'c'], 1), ['b', 'c', 'a']);
    assert.deepEqual(rotation(['a', 'b', 'c'], 4), ['b', 'c', 'a']);
  });

  it('takes each ratio to the baseline within its repetition, then the median of the ratios', () => {
    // Repetition 1 is noisy for both servers alike; the ratio stays 1.2.
    const reps: Repetition[] = [
      { baseline: result('baseline', run(2, 6)), shards1: result('shards1', run(2.4, 6.6)) },
      { baseline: result('baseline', run(20, 6)), shards1: result('shards1', run(24, 6.6)) },
      { baseline: result('baseline', run(3, 6)), shards1: result('shards1', run(3.6, 6.6)) },
    ];
    const [baseline, shards1] = summarizeRepetitions(['baseline', 'shards1'], reps);
    assert.equal(baseline!.p99VsBaseline, null);
    assert.deepEqual(shards1!.p99Ms, { median: 3.6, min: 2.4, max: 24, n: 3 });
    assert.deepEqual(shards1!.p99VsBaseline, { median: 1.2, min: 1.2, max: 1.2, n: 3 });
    assert.equal(shards1!.checks.p99VsBaseline, true); // 1.2 <= 1.3
    assert.equal(shards1!.checks.cpuVsBaseline, false); // 1.1 > 1.05 for one shard
    assert.equal(shards1!.pass, false);
  });

  it('compares each real-server target with the pinging baseline too, when it ran', () => {
    const reps: Repetition[] = [
      { baseline: result('baseline', run(2, 5)), 'baseline-pings': result('baseline-pings', run(2, 5.5)), shards1: result('shards1', run(2.2, 6.05)) },
      { baseline: result('baseline', run(2, 5)), 'baseline-pings': result('baseline-pings', run(4, 5.5)), shards1: result('shards1', run(2.2, 5.5)) },
    ];
    const [baseline, pinging, shards1] = summarizeRepetitions(['baseline', 'baseline-pings', 'shards1'], reps);
    assert.equal(baseline!.vsBaselinePings, null);
    assert.equal(pinging!.vsBaselinePings, null, 'a baseline is not compared with a baseline');
    assert.deepEqual(pinging!.cpuVsBaseline, { median: 1.1, min: 1.1, max: 1.1, n: 2 });
    assert.deepEqual(shards1!.vsBaselinePings!.cpu, { median: 1.05, min: 1, max: 1.1, n: 2 });
    assert.deepEqual(shards1!.vsBaselinePings!.p99, { median: 0.825, min: 0.55, max: 1.1, n: 2 });
    // The checks stay against the plain baseline.
    assert.deepEqual(shards1!.cpuVsBaseline, { median: 1.155, min: 1.1, max: 1.21, n: 2 });
    assert.equal(shards1!.checks.cpuVsBaseline, false);
    assert.equal(summarizeRepetitions(['shards1'], [{ shards1: result('shards1', run(2, 6)) }])[0]!.vsBaselinePings, null, 'none without baseline-pings');
  });

  it('with --sched, summarizes the waits to run of the runs that could record them', () => {
    const sched = (perS: number, totalMs: number) => ({
      available: true as const,
      seconds: 10,
      tid: 7,
      runsPerS: 300,
      delayMs: { p50: 0, p99: 0.1, p999: 1, max: 2 },
      longWaits: { thresholdMs: 0.2, perS, totalMs },
      ranInsteadMs: {},
      wokenByPerS: {},
    });
    const reps: Repetition[] = [
      { shards1: { ...result('shards1', run(2, 6)), sched: sched(1, 15) } },
      { shards1: { ...result('shards1', run(2, 6)), sched: { available: false, reason: 'perf is not installed (Debian: linux-perf)' } } },
      { shards1: { ...result('shards1', run(2, 6)), sched: sched(3, 35) } },
    ];
    const [shards1] = summarizeRepetitions(['shards1'], reps);
    assert.deepEqual(shards1!.sched, {
      longWaitsPerS: { median: 2, min: 1, max: 3, n: 2 },
      longWaitMsPerS: { median: 2.5, min: 1.5, max: 3.5, n: 2 },
      runsPerS: { median: 300, min: 300, max: 300, n: 2 },
    });
    assert.equal(summarizeRepetitions(['shards1'], [{ shards1: result('shards1', run(2, 6)) }])[0]!.sched, null, 'none without --sched');
  });

  it('counts runs with a saturated generator apart from runs whose schedule slipped while it had CPU to spare', () => {
    const reps: Repetition[] = [
      { shards1: result('shards1', run(2, 6, { generatorSaturated: true, scheduleSlipped: true })) },
      { shards1: result('shards1', run(2, 6, { scheduleSlipped: true })) }, // a host that stopped the generator's core
      { shards1: result('shards1', run(2, 6)) },
    ];
    const [shards1] = summarizeRepetitions(['shards1'], reps);
    assert.equal(shards1!.saturatedRuns, 1);
    assert.equal(shards1!.slippedRuns, 2);
  });

  it('fails a target that lost a delivery in any repetition, or that errored', () => {
    const reps: Repetition[] = [
      { baseline: result('baseline', run(2, 6)), shards1: result('shards1', run(2, 6, { lostDeliveries: 1 })) },
      { baseline: result('baseline', run(2, 6)), shards1: { target: 'shards1', error: 'not built' } },
    ];
    const [, shards1] = summarizeRepetitions(['baseline', 'shards1'], reps);
    assert.equal(shards1!.lostDeliveries, 1);
    assert.deepEqual(shards1!.errors, ['not built']);
    assert.equal(shards1!.checks.ran, false);
    assert.equal(shards1!.checks.noLostDeliveries, false);
  });
});

describe('bench:send repetitions', () => {
  const run = (server: SendRun['server'], cpuUs: number, p50: number): SendRun => ({
    server,
    sync: 'full',
    offered_per_s: 5000,
    stored_per_s: 5000,
    delivered_and_acked_per_s: 5000,
    send_to_stored_ms: { p50, p99: p50 * 2, max: p50 * 3 },
    send_to_delivery_ms: { p50, p99: p50 * 2, max: p50 * 3 },
    errors: 0,
    unanswered_sends: 0,
    server_cpu_s: cpuUs * 0.03,
    server_cpu_us_per_stored: cpuUs,
    server_cpu_ms_per_s: cpuUs * 5,
    server_cpu_at_ready_s: 1,
    server_cpu_total_s: 5,
  });

  it('summarizes each server apart and takes the CPU ratio within each repetition before the median', () => {
    // Repetition 1 ran on a busy machine: both servers' figures doubled, their ratio did not.
    const runs = [run('baseline', 100, 5), run('this', 110, 6), run('this', 220, 12), run('baseline', 200, 10), run('baseline', 100, 5), run('this', 90, 6)];
    const [baseline, ours] = summarizeSendRuns(runs);
    assert.equal(baseline!.server, 'baseline');
    assert.deepEqual(baseline!.server_cpu_us_per_stored, { median: 100, min: 100, max: 200, n: 3 });
    assert.equal(baseline!.cpu_vs_baseline, null);
    assert.equal(ours!.server, 'this');
    assert.deepEqual(ours!.send_to_delivery_p50_ms, { median: 6, min: 6, max: 12, n: 3 });
    assert.deepEqual(ours!.cpu_vs_baseline, { median: 1.1, min: 0.9, max: 1.1, n: 3 });
  });

  it('has no ratio without a baseline', () => {
    const [ours] = summarizeSendRuns([run('this', 100, 5)]);
    assert.equal(ours!.cpu_vs_baseline, null);
    assert.equal(ours!.runs, 1);
  });
});

describe('--trace-gc-nvp lines', () => {
  const line = (isolate: string, ms: number, pause: number, gc: string, reduce: number, allocated: number) =>
    `[42:${isolate}]     ${ms} ms: pause=${pause} mutator=1.0 gc=${gc} reduce_memory=${reduce} time_to_safepoint=0.00 allocated=${allocated} promoted=0`;

  it('counts pauses and allocation per isolate inside a window, and ignores other output', () => {
    const trace = new GcTrace(1_000);
    assert.equal(trace.onLine('{"level":30,"msg":"ready"}'), false);
    assert.equal(trace.onLine(line('0xa', 100, 0.5, 's', 0, 1000)), true); // at 1,100: before the window
    trace.onLine(line('0xa', 2_000, 1.5, 's', 0, 4000));
    trace.onLine(line('0xb', 2_500, 6.25, 'ms', 1, 9000));
    trace.onLine(line('0xa', 2_600, 0.25, 's', 0, 2000));
    const w = trace.summarize(2_000, 4_000);
    assert.equal(w.pausesOver1Ms, 2);
    assert.deepEqual(
      w.isolates.map((i) => [i.isolate, i.scavenges, i.scavengeMsMax, i.markCompacts, i.markCompactMsMax, i.memoryReducing, i.allocatedBytes]),
      [['0xa', 2, 1.5, 0, 0, 0, 6000], ['0xb', 0, 0, 1, 6.25, 1, 9000]],
    );
    assert.equal(trace.summarize().isolates[0]!.scavenges, 3);
  });
});

/**
 * Every benchmark, run end to end with a tiny load (the compiled scripts that `npm run bench:*`
 * runs): they start, talk to their servers, and agree with themselves. Nothing here is a
 * measurement; only what must hold at any speed is checked.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { HAVE_OPENSSL } from '../tools/lib/self-signed.js';
import { redisServerAvailable } from '../tools/lib/redis-server.js';
import { SERVER_MAIN } from '../tools/lib/server-process.js';

const run = promisify(execFile);

async function bench(script: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<Record<string, unknown>> {
  const file = fileURLToPath(new URL(`../tools/bench/${script}`, import.meta.url));
  const { stdout } = await run(process.execPath, [file, ...args], { env: { ...process.env, ...env }, maxBuffer: 16 << 20 });
  return JSON.parse(stdout) as Record<string, unknown>;
}

// Side by side: each waits mostly on its own servers and timers, nothing here is timed, and one
// after another they were the slowest file of the suite (85 s).
describe('benchmarks (smoke)', { concurrency: 3 }, () => {
  it('bench:client: every receiver (bare, bare+parse, the SDK) gets every message, and the report has its figures', async () => {
    const report = await bench('client-overhead.js', ['--messages', '300', '--runs', '1', '--rate', '3000']);
    const results = report.results as Record<string, { received: number[]; median: number }>;
    for (const mode of ['bare', 'bare+parse', 'sdk']) {
      assert.deepEqual(results[mode]!.received, [300], mode);
      assert.ok(results[mode]!.median > 0, mode);
    }
    assert.equal(typeof report.pass, 'boolean');
  });

  it('bench:interleaved: both servers get every delivery in every window, each pair gives its ratios, and each block of two pairs a CPU ratio', async () => {
    const report = await bench('interleaved.js', [
      ...['--targets', 'shards1', '--connections', '20', '--groups', '2', '--rate', '50'],
      ...['--pairs', '2', '--window', '0.5', '--warmup', '0.5'],
    ]);
    type Spread = { median: number; n: number };
    const [result] = report.results as Array<{
      target: string;
      pairs: Array<Record<string, unknown>>;
      summary: { cpuRatio: Spread; cpuRatioWarm: Spread; cpuRatioByOrder: Record<'targetAfterBaseline' | 'targetAfterItself', Spread>; lost: Record<string, number> };
    }>;
    assert.equal(result!.target, 'shards1');
    assert.deepEqual(result!.pairs.map((p) => p.first), ['baseline', 'shards1']);
    for (const pair of result!.pairs) {
      for (const name of ['baseline', 'shards1']) {
        const w = pair[name] as { pubs: number; deliveries: number; lost: number; cpuUsPerDelivery: number; idleOtherCpuShare: number };
        assert.equal(w.deliveries, w.pubs * 10, name);
        assert.equal(w.lost, 0, name);
        assert.ok(w.cpuUsPerDelivery > 0 && w.idleOtherCpuShare >= 0, JSON.stringify(w));
      }
    }
    assert.equal(result!.summary.cpuRatio.n, 1, 'two pairs make one block');
    assert.ok(result!.summary.cpuRatio.median > 0);
    assert.equal(result!.summary.cpuRatioWarm.n, 1, 'one window of each that followed its own, per block');
    assert.equal(result!.summary.cpuRatioByOrder.targetAfterBaseline.n, 1);
    assert.equal(result!.summary.cpuRatioByOrder.targetAfterItself.n, 1);
    assert.deepEqual(result!.summary.lost, { baseline: 0, shards1: 0 });
  });

  it('bench:interleaved --freeze-idle: the waiting server is stopped through the other\'s window, loses nothing, and each window says where its CPU went', async () => {
    const report = await bench('interleaved.js', [
      ...['--targets', 'shards1', '--connections', '20', '--groups', '2', '--rate', '50'],
      ...['--pairs', '2', '--window', '0.5', '--warmup', '0.5', '--freeze-idle'],
    ]);
    type Window = { deliveries: number; pubs: number; lost: number; idleOtherCpuShare: number; wakeupsPerPub: number; byThreadUsPerDelivery: { main: number; other: number[] } };
    const [result] = report.results as Array<{ pairs: Array<Record<string, unknown>>; summary: { byThread: Record<string, { mainUs: number; otherUs: number }> } }>;
    assert.equal((report.config as { freezeIdle: boolean }).freezeIdle, true);
    for (const pair of result!.pairs) {
      const baseline = pair.baseline as Window;
      const shards1 = pair.shards1 as Window;
      for (const w of [baseline, shards1]) {
        assert.equal(w.deliveries, w.pubs * 10);
        assert.equal(w.idleOtherCpuShare, 0, 'a stopped process uses no CPU');
        assert.ok(w.wakeupsPerPub > 0, JSON.stringify(w));
      }
      assert.ok(baseline.byThreadUsPerDelivery.main > 0, 'the baseline runs on its main thread');
      assert.ok(shards1.byThreadUsPerDelivery.other[0]! > shards1.byThreadUsPerDelivery.main, 'the real server delivers from its shard, not its primary');
    }
    assert.ok(result!.summary.byThread.shards1!.otherUs > 0);
  });

  /** The windows of a two-thread uWS yardstick, run against the pinging baseline on 2 groups. */
  async function yardstickWindows(target: string, connections: number): Promise<{ placement: string; windows: YardstickWindow[] }> {
    const report = await bench('interleaved.js', [
      ...['--baseline', 'baseline-pings', '--targets', target, '--connections', String(connections), '--groups', '2', '--rate', '50'],
      ...['--pairs', '2', '--window', '0.5', '--warmup', '0.5'],
    ]);
    const [result] = report.results as Array<{ target: string; placement: string; pairs: Array<Record<string, unknown>> }>;
    assert.equal(result!.target, target);
    return { placement: result!.placement, windows: result!.pairs.map((pair) => pair[target] as YardstickWindow) };
  }
  type YardstickWindow = { deliveries: number; pubs: number; lost: number; byThreadUsPerDelivery: { other: number[] } };

  it('bench:interleaved --baseline baseline-pings --targets baseline2-by-shard: the uWS yardstick in two threads on one port delivers every group from the thread its members are on', async () => {
    const { placement, windows } = await yardstickWindows('baseline2-by-shard', 20);
    assert.equal(placement, 'by-shard');
    for (const w of windows) {
      assert.equal(w.deliveries, w.pubs * 10);
      assert.equal(w.lost, 0);
      assert.equal(w.byThreadUsPerDelivery.other.length, 2, 'both threads deliver: group 0 on one, group 1 on the other');
    }
  });

  it('bench:interleaved --baseline baseline-pings --targets baseline2-spread: the uWS yardstick in two threads forwards each pub to the other thread over the rings, so every member gets it wherever the kernel put it', async () => {
    const { placement, windows } = await yardstickWindows('baseline2-spread', 40);
    assert.equal(placement, 'spread');
    for (const w of windows) {
      // 20 members a group, spread by the kernel over two threads: each thread has some of most groups.
      assert.equal(w.deliveries, w.pubs * 20);
      assert.equal(w.lost, 0);
      assert.equal(w.byThreadUsPerDelivery.other.length, 2);
    }
  });

  it('bench:interleaved --baseline shards1 --baseline-main PATH: the baseline is the real server that PATH starts (another build), measured window by window against this one', async () => {
    const report = await bench('interleaved.js', [
      ...['--baseline', 'shards1', '--baseline-main', SERVER_MAIN, '--targets', 'shards1', '--connections', '20', '--groups', '2', '--rate', '50'],
      ...['--pairs', '2', '--window', '0.5', '--warmup', '0.5'],
    ]);
    type Window = { deliveries: number; pubs: number; lost: number; byThreadUsPerDelivery: { other: number[] } };
    assert.equal((report.config as { baselineMain: unknown }).baselineMain, SERVER_MAIN);
    const [result] = report.results as Array<{ target: string; pairs: Array<Record<string, unknown>> }>;
    assert.deepEqual(result!.pairs.map((p) => p.first), ['baseline', 'shards1']);
    for (const pair of result!.pairs) {
      for (const name of ['baseline', 'shards1']) {
        const w = pair[name] as Window;
        assert.equal(w.deliveries, w.pubs * 10, name);
        assert.equal(w.lost, 0, name);
        assert.ok(w.byThreadUsPerDelivery.other.length >= 1, `${name}: a real server, whose shard thread delivers`);
      }
    }
  });

  it('bench:broadcast: every repetition of the baseline and the real server delivers everything, the summary has a median per figure, and --trace-gc counts collections', async () => {
    const report = await bench('broadcast.js', [
      ...['--targets', 'baseline,shards1', '--connections', '20', '--groups', '2', '--publishers', '2'],
      ...['--rate', '50', '--duration', '1', '--warmup', '0.5', '--drain', '3', '--verify-every', '2', '--repeat', '2', '--trace-gc', '--noise-probe', '0.1'],
    ]);
    const repetitions = report.repetitions as Record<string, Record<string, unknown>>[];
    assert.equal(repetitions.length, 2);
    for (const rep of repetitions) {
      for (const target of ['baseline', 'shards1']) {
        const r = rep[target]!;
        assert.equal(r.error, undefined, `${target}: ${r.error}`);
        assert.equal(r.expectedDeliveries, 500, target);
        assert.equal(r.receivedDeliveries, 500, target);
        assert.equal(r.lostDeliveries, 0, target);
        assert.equal(r.duplicateDeliveries, 0, target);
        assert.equal(r.misroutedDeliveries, 0, target);
        assert.ok((r.verifiedFrames as number) > 0, target);
        assert.equal(r.parserMismatches, 0, target);
        const gc = r.gc as { run: { isolates: unknown[] } };
        assert.ok(gc.run.isolates.length >= 1, `${target}: no --trace-gc line was read`);
        const noise = r.hostNoise as { lostPct: number; maxGapMs: number }[];
        assert.equal(noise.length, 2, `${target}: the host's share of each core is measured before the run`);
        for (const n of noise) assert.ok(n.lostPct >= 0 && n.lostPct <= 100 && n.maxGapMs >= 0, JSON.stringify(n));
        assert.equal(typeof r.hostNoisy, 'boolean');
      }
    }
    const summary = report.summary as Array<{ target: string; runs: number; p99Ms: { median: number; n: number }; cpuVsBaseline: unknown }>;
    assert.deepEqual(summary.map((s) => [s.target, s.runs, s.p99Ms.n]), [['baseline', 2, 2], ['shards1', 2, 2]]);
    assert.equal(summary[0]!.cpuVsBaseline, null); // the baseline is not compared with itself
  });

  it('bench:broadcast: metrics-off runs without histograms, scrape reads /metrics during the window, and both read the server\'s own window', async () => {
    const report = await bench('broadcast.js', [
      ...['--targets', 'shards1,metrics-off,scrape', '--connections', '20', '--groups', '2', '--publishers', '2'],
      ...['--rate', '50', '--duration', '1.5', '--warmup', '0.5', '--drain', '3', '--repeat', '1', '--noise-probe', '0.1'],
    ]);
    const [rep] = report.repetitions as Record<string, { lostDeliveries: number; server?: { window: { available: boolean; reason?: string }; scrapes?: { count: number; failed: number } } }>[];
    for (const target of ['shards1', 'metrics-off', 'scrape']) assert.equal(rep![target]!.lostDeliveries, 0, target);
    assert.equal(rep!['metrics-off']!.server, undefined);
    for (const target of ['shards1', 'scrape']) assert.equal(rep![target]!.server!.window.available, true, rep![target]!.server!.window.reason);
    assert.ok(rep!.scrape!.server!.scrapes!.count >= 1);
    assert.equal(rep!.scrape!.server!.scrapes!.failed, 0);
    const summary = report.summary as Array<{ target: string; vsShards1: Record<string, { n: number }> | null }>;
    assert.equal(summary.find((s) => s.target === 'metrics-off')!.vsShards1!.metricsCpuCost!.n, 1);
    assert.equal(summary.find((s) => s.target === 'scrape')!.vsShards1!.eventLoopP99!.n, 1);
  });

  it('bench:broadcast: the -tls targets deliver everything over wss://, and shards1-tls has its ratios to baseline-tls', { skip: !HAVE_OPENSSL && 'no openssl command' }, async () => {
    const report = await bench('broadcast.js', [
      ...['--targets', 'baseline,baseline-tls,shards1-tls', '--connections', '20', '--groups', '2', '--publishers', '2'],
      ...['--rate', '50', '--duration', '1.5', '--warmup', '0.5', '--drain', '3', '--repeat', '1', '--noise-probe', '0.1'],
    ]);
    const [rep] = report.repetitions as Record<string, { lostDeliveries: number }>[];
    for (const target of ['baseline-tls', 'shards1-tls']) assert.equal(rep![target]!.lostDeliveries, 0, target);
    const summary = report.summary as Array<{ target: string; cpuVsBaseline: { n: number } | null; vsBaselineTls: { cpu: { n: number } | null } | null }>;
    assert.equal(summary.find((s) => s.target === 'baseline-tls')!.cpuVsBaseline!.n, 1, 'what TLS costs uWS itself');
    assert.equal(summary.find((s) => s.target === 'shards1-tls')!.vsBaselineTls!.cpu!.n, 1);
  });

  it('bench:connect: every storm of every target connects and joins every client, and the warm storms have a median', { skip: !HAVE_OPENSSL && 'no openssl command' }, async () => {
    const report = await bench('connect-storm.js', ['--connections', '30', '--concurrency', '10', '--storms', '2', '--targets', 'baseline,shards1,shards1-tls']);
    const summary = report.summary as Array<{ target: string; coldUsPerConnection: number; warmUsPerConnection: { n: number } | null; warmVsBaseline: number | null }>;
    assert.deepEqual(summary.map((s) => s.target), ['baseline', 'shards1', 'shards1-tls']);
    // 30 connections are a tick or two of /proc's 10 ms clock: a smoke test of the run, not of its figures.
    for (const s of summary) assert.ok(s.coldUsPerConnection >= 0 && s.warmUsPerConnection!.n === 1, s.target);
  });

  it('bench:wsclient: our client counts the blast server\'s frames, every one parsed', async () => {
    const report = await bench('wsclient-throughput.js', ['--clients', 'ours', '--connections', '2', '--seconds', '1', '--parse']);
    const cases = report.cases as Array<{ client: string; messagesPerSecond: number; parsedAll: boolean }>;
    assert.deepEqual(cases.map((c) => c.client), ['ours']);
    for (const c of cases) {
      assert.ok(c.messagesPerSecond > 0, c.client);
      assert.equal(c.parsedAll, true, c.client);
    }
  });

  it("bench:idle: the idle servers' CPU and their threads' wake-ups are read from /proc", async () => {
    const report = await bench('idle.js', ['--warmup', '0', '--window', '1']);
    const results = report.results as Array<{ target: string; cpuSeconds: number; wakeupsPerS: { primary: number } }>;
    assert.deepEqual(results.map((r) => r.target), ['baseline', 'shards1', 'shards2']);
    for (const r of results) assert.ok(r.cpuSeconds >= 0 && r.wakeupsPerS.primary >= 0, r.target);
  });

  it('bench:idle --connections: each server is measured with its clients joined, by shard where the target says so, its CPU by thread', async () => {
    const report = await bench('idle.js', ['--warmup', '0', '--window', '1', '--connections', '40', '--groups', '4', '--targets', 'baseline2-by-shard,shards2-by-shard']);
    type Result = { target: string; shards: number; connections: number; cpuSeconds: number; byThread: { mainMsPerS: number; otherMsPerS: number[] } };
    const results = report.results as Result[];
    assert.deepEqual(results.map((r) => [r.target, r.shards, r.connections]), [['baseline2-by-shard', 2, 40], ['shards2-by-shard', 2, 40]]);
    for (const r of results) assert.ok(r.cpuSeconds >= 0 && r.byThread.mainMsPerS >= 0 && r.byThread.otherMsPerS.every((ms) => ms > 0), JSON.stringify(r));
  });

  it('bench:ring: both rings move every record', async () => {
    const report = await bench('ring.js', ['--records', '20000', '--sizes', '64']);
    const results = report.results as Array<Record<string, { recordsPerSecond: number }>>;
    assert.equal(results.length, 2); // single-thread and cross-thread
    for (const row of results) assert.ok(row.ours!.recordsPerSecond > 0 && row['ringbuf.js']!.recordsPerSecond > 0);
  });

  it('bench:any: every strategy picks at every size and case, with its ratio to round_robin', async () => {
    const report = await bench('any-pick.js', ['--sizes', '10,100', '--repeat', '2', '--picks', '1000']);
    const results = report.results as Array<{ size: number; case: string; strategy: string; usPerPick: { n: number }; vsRoundRobin: { n: number } | null }>;
    assert.equal(results.length, 2 * 2 * 3);
    for (const r of results) {
      assert.equal(r.usPerPick.n, 2, JSON.stringify(r));
      assert.equal(r.vsRoundRobin === null, r.strategy === 'round_robin', JSON.stringify(r));
    }
  });

  it('bench:send: every durable send is stored, delivered and acknowledged', async () => {
    const report = await bench('durable-send.js', [], { BENCH_RATE: '200', BENCH_SECONDS: '1', BENCH_MODES: 'none' });
    const [result] = report.results as Array<Record<string, number>>;
    assert.equal(result!.errors, 0);
    assert.ok(result!.stored_per_s! > 0 && result!.delivered_and_acked_per_s! > 0);
    // The server's CPU from /proc: something at start-up, and no less by the time it stopped.
    assert.ok(result!.server_cpu_at_ready_s! > 0 && result!.server_cpu_total_s! >= result!.server_cpu_at_ready_s!);
  });

  it('bench:stored: every send to an offline user is acknowledged, the memory is read from /proc, and /stats counts what is stored', async () => {
    const report = await bench('stored-memory.js', [], { BENCH_MESSAGES: '50', BENCH_BYTES: '1024', BENCH_SETTLE_S: '2' });
    assert.equal(report.acked, 50);
    assert.deepEqual(report.refused, {});
    const rss = report.rss_mib as Record<string, { rss: number; anon: number; file: number }>;
    for (const when of ['started', 'all_answered', 'after_settle']) assert.ok(rss[when]!.rss > 0 && rss[when]!.anon > 0, when);
    const messaging = report.messaging as Record<string, number>;
    assert.equal(messaging.stored, 50);
    assert.equal(messaging.stored_bytes, 50 * 1024);
  });

  it('bench:redis-cost: every case runs and has its figures, and the large cases their ratios to the small ones', { skip: !redisServerAvailable() && 'no redis-server' }, async () => {
    const report = await bench('redis-cost.js', ['--repeat', '1', '--duration', '0.5', '--scheduled', '50', '--members', '20']);
    const cases = report.cases as Record<string, { redisCpuMsPerOp: { n: number } | null; opsPerSecond: { median: number } | null }>;
    assert.deepEqual(Object.keys(cases), ['send', 'reconnect-small', 'reconnect-large', 'any-small', 'any-large', 'any-large-least-connections', 'any-large-weighted']);
    for (const [name, c] of Object.entries(cases)) assert.ok(c.opsPerSecond!.median > 0 && c.redisCpuMsPerOp!.n === 1, name);
    // Half a second of Redis CPU may round to nothing: the ratios are there, perhaps null.
    assert.deepEqual(Object.keys(report.largeOverSmall as object), ['reconnect', 'any', 'anyLeastConnections', 'anyWeighted']);
  });
});

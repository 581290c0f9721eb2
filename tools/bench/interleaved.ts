/**
 * The broadcast load against the uWS baseline and a target up at the same time, the load going
 * to one of them at a time in short windows, in pairs (baseline then target, then target then
 * baseline, ...): each pair of windows sees nearly the same host, which cancels most of what
 * the host takes from the guest, which moves `bench:broadcast`'s back-to-back figures by 15% or
 * more from one run to the next on our VMs.
 *
 *   npm run bench:interleaved [-- --targets shards1,shards2 --pairs 12 --window 4 --warmup 30
 *     --baseline baseline|baseline-pings|baseline2-by-shard|baseline2-spread --freeze-idle]
 *   npm run bench:interleaved -- --baseline shards2-by-shard --baseline-main OLD/dist/src/main.js
 *     --targets shards2-by-shard
 *
 * `--baseline-main`: the baseline is that other build's real server (any target name then), so
 * a change is measured against the build before it, window by window on the same host: a
 * before and after too small for back-to-back runs to resolve.
 *
 * `--targets shards2-by-shard`: two shards with each group on one of them (a connection the
 * kernel put on another shard than its group's is opened again), routing by interest's case.
 * Its yardstick with the same layout: `--baseline baseline-pings --targets
 * baseline2-by-shard,shards2-by-shard` (the uWS server in two threads, each group on one).
 * Two shards spread (`shards2`, every group on both) have theirs in `--targets
 * baseline2-spread,shards2`: the same two threads, each pub forwarded over the server's rings.
 *
 * Both servers are pinned to CPU 0 and the generator to CPU 1, as in bench:broadcast; each has
 * its own 2,000 connections in 20 groups, one publisher per group, 500 pubs a second in its
 * windows. The server that waits between its windows is idle but connected: a real server then
 * still pings its connections and walks them, which runs beside the baseline's windows
 * (reported: idleTargetCpuShareInBaselineWindows, about 3% of the baseline's CPU at 2,000
 * connections) and is counted in its own. `--freeze-idle` stops the waiting server (SIGSTOP, every
 * thread) for the other's window, and lets it run again FREEZE_SETTLE_MS before its own: no
 * idle server's work then shares the core with a window at all. Per window: server CPU per delivery (all threads,
 * schedstat), deliveries and losses, latency P99 and max.
 *
 * A window that follows the other server's costs more than one that follows its own (the
 * core's caches, we think), and with the order alternating, pairs whose target window comes
 * second (even pairs, from 0) are higher than the others: the ratios of single pairs fall in
 * two groups (one shard, 2026-11-30: 1.06-1.18 and 0.99-1.05). So the CPU ratio is
 * taken over blocks of two pairs (baseline, target, target, baseline), in which each server
 * has one window after its own and one after the other's; the warm-up ends with the
 * baseline's, so that the first block is like the rest. The two groups are reported too
 * (cpuRatioByOrder), and the ratio of the two windows of a block that followed their own
 * server's (cpuRatioWarm: each server with the core's caches its own, as when it runs alone;
 * single windows, so wider). JSON on stdout: each pair, and the median, quartiles and range of
 * each ratio (target over baseline: CPU within each block, P99 and max within each pair).
 */
import { performance } from 'node:perf_hooks';
import { newHistogram, summarize } from '../lib/histogram.js';
import { splitThreads } from './lib/window-cpu.js';
import { isBaseline, placementOf, TARGET_NAMES, type TargetName } from './lib/broadcast-targets.js';
import { round } from './lib/broadcast-load-types.js';
import { LoadedServer } from './lib/loaded-server.js';
import { pinningReport, reexecPinnedGenerator } from './lib/pinning.js';
import { toolArgs } from '../lib/cli.js';

const values = toolArgs(
  {
    command: 'npm run bench:interleaved --',
    about: 'The uWS baseline and each target up at once, the broadcast load going to one of them at a time in short windows, in pairs: CPU per delivery, P99 and max of each target against the baseline on nearly the same host. JSON on stdout.',
    options: {
      targets: { type: 'names', known: TARGET_NAMES, default: 'shards1,shards2', help: 'servers compared with the baseline, one after another' },
      pairs: { type: 'int', default: 12, min: 2, help: 'pairs of windows per target (even: the CPU ratio is taken over blocks of two)' },
      window: { type: 'number', default: 4, help: 'seconds of load in each window' },
      warmup: { type: 'number', default: 30, help: 'seconds of load on each server before its first window' },
      connections: { type: 'int', default: 2000, min: 1, help: 'connections to each server (a multiple of --groups)' },
      groups: { type: 'int', default: 20, min: 1, help: 'groups, one publisher each' },
      rate: { type: 'number', default: 500, help: 'pubs a second in a window' },
      'server-node-args': { type: 'string', default: '', value: '"ARGS"', help: 'more node options for every server, space-separated' },
      baseline: { type: 'choice', known: TARGET_NAMES, default: 'baseline', help: 'the yardstick: baseline, baseline-pings, baseline2-by-shard or baseline2-spread (any target with --baseline-main)' },
      'freeze-idle': { type: 'boolean', help: "stop the waiting server (SIGSTOP) during the other's window" },
      'baseline-main': { type: 'string', value: 'FILE', help: "another build's dist/src/main.js: the baseline is that build's real server" },
    },
  },
  (v) => {
    const baseline = v.baseline;
    if (!(isBaseline(baseline) || v['baseline-main'] !== undefined)) {
      throw new Error(`--baseline: not a baseline: ${baseline} (a real-server target is one with --baseline-main only)`);
    }
    if (v['baseline-main'] !== undefined && isBaseline(baseline)) throw new Error(`--baseline-main: ${baseline} is the benchmark's uWS server, not another build's`);
    // Another baseline may be a target (baseline2-by-shard against baseline-pings: what a second thread costs uWS itself).
    for (const t of v.targets) if (t === baseline && v['baseline-main'] === undefined) throw new Error(`--targets: not a target to compare with ${baseline}: ${t}`);
    // Every group then has the same members, and connection g (g < GROUPS) publishes to group g.
    if (v.connections < v.groups || v.connections % v.groups !== 0) throw new Error('--connections must be a multiple of --groups');
    if (v.pairs % 2 !== 0) throw new Error('--pairs must be even: the CPU ratio is taken over blocks of two pairs');
    if (!(v.window > 0 && v.rate > 0)) throw new Error('--window and --rate must be positive');
  },
);
const BASELINE: TargetName = values.baseline;
const BASELINE_MAIN = values['baseline-main'];
const targets = values.targets;
const PAIRS = values.pairs;
const WINDOW_MS = values.window * 1000;
const WARMUP_MS = values.warmup * 1000;
const CONNECTIONS = values.connections;
const GROUPS = values.groups;
const RATE = values.rate;
const NODE_ARGS = values['server-node-args'].split(' ').filter(Boolean);
/** After a window's last pub, how long its deliveries may take to arrive before the rest count as lost. */
const DRAIN_MS = 2000;
const FREEZE_IDLE = values['freeze-idle'];
/** With --freeze-idle, how long a server runs after SIGCONT before its window: its late timers fire outside the window. */
const FREEZE_SETTLE_MS = 500;
const SHAPE = { connections: CONNECTIONS, groups: GROUPS, nodeArgs: NODE_ARGS };

reexecPinnedGenerator();

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const log = (line: string): void => void process.stderr.write(`${line}\n`);

/** Publishes at RATE for `ms`, publisher g (connection g) to group g in turn; resolves with the pubs sent. */
function publish(s: LoadedServer, ms: number): Promise<number> {
  const start = performance.now();
  let k = 0;
  return new Promise((resolve) => {
    const turn = (): void => {
      const due = Math.min(Math.floor(((performance.now() - start) * RATE) / 1000), Math.floor((ms * RATE) / 1000));
      for (; k < due; k++) {
        const g = k % GROUPS;
        s.clients[g]!.send(`{"op":"pub","group":"g${g}","data":{"t":${performance.timeOrigin + performance.now()},"k":${k}}}`);
      }
      if (performance.now() - start >= ms) resolve(k);
      else setTimeout(turn, 2);
    };
    turn();
  });
}

interface WindowResult {
  pubs: number;
  deliveries: number;
  lost: number;
  cpuUsPerDelivery: number;
  p99Ms: number;
  maxMs: number;
  /** CPU the other, idle server used meanwhile (its timers, pings), as a share of this one's. */
  idleOtherCpuShare: number;
  /** Where this server's CPU went, µs per delivery: its main thread, V8's platform threads, the rest (shards) busiest first. */
  byThreadUsPerDelivery: { main: number; v8Platform: number; other: number[] };
  /** Times its threads blocked and were woken, all threads together, per pub. */
  wakeupsPerPub: number;
}

async function runWindow(s: LoadedServer, idle: LoadedServer, ms: number): Promise<WindowResult> {
  const members = CONNECTIONS / GROUPS;
  const delivered = s.delivered;
  const cpu = s.cpuUs();
  const idleCpu = idle.cpuUs();
  const threads = s.threads();
  s.latency = newHistogram();
  const pubs = await publish(s, ms);
  const expected = pubs * members;
  const deadline = performance.now() + DRAIN_MS;
  while (s.delivered - delivered < expected && performance.now() < deadline) await sleep(10);
  const deliveries = s.delivered - delivered;
  const latency = summarize(s.latency);
  const used = s.cpuUs() - cpu;
  const after = s.threads();
  const split = splitThreads(s.server.pid, threads.cpu, after.cpu);
  const perDelivery = (us: number): number => round(us / Math.max(1, deliveries), 3);
  let wakeups = 0;
  for (const [tid, n] of after.wakeups) wakeups += n - (threads.wakeups.get(tid) ?? n);
  return {
    pubs,
    deliveries,
    lost: expected - deliveries,
    cpuUsPerDelivery: round(used / Math.max(1, deliveries), 3),
    p99Ms: latency.p99Ms,
    maxMs: latency.maxMs,
    idleOtherCpuShare: round((idle.cpuUs() - idleCpu) / used, 4),
    byThreadUsPerDelivery: { main: perDelivery(split.mainUs), v8Platform: perDelivery(split.v8PlatformUs), other: split.otherUs.filter((us) => us > 0).map(perDelivery) },
    wakeupsPerPub: round(wakeups / Math.max(1, pubs), 2),
  };
}

interface Quartiles {
  median: number;
  q1: number;
  q3: number;
  min: number;
  max: number;
  n: number;
}

function quartiles(values: number[]): Quartiles {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number): number => {
    const i = q * (sorted.length - 1);
    const low = Math.floor(i);
    return round(sorted[low]! + (sorted[Math.ceil(i)]! - sorted[low]!) * (i - low), 3);
  };
  return { median: at(0.5), q1: at(0.25), q3: at(0.75), min: round(sorted[0]!, 3), max: round(sorted.at(-1)!, 3), n: sorted.length };
}

function threadMedians(windows: WindowResult[]): { mainUs: number; v8PlatformUs: number; otherUs: number; wakeupsPerPub: number } {
  const median = (pick: (w: WindowResult) => number): number => quartiles(windows.map(pick)).median;
  return {
    mainUs: median((w) => w.byThreadUsPerDelivery.main),
    v8PlatformUs: median((w) => w.byThreadUsPerDelivery.v8Platform),
    otherUs: median((w) => w.byThreadUsPerDelivery.other.reduce((a, b) => a + b, 0)),
    wakeupsPerPub: median((w) => w.wakeupsPerPub),
  };
}

async function compare(name: TargetName): Promise<unknown> {
  const baseline = await LoadedServer.start(BASELINE, { ...SHAPE, serverMain: BASELINE_MAIN });
  let target: LoadedServer;
  try {
    target = await LoadedServer.start(name, SHAPE);
  } catch (err) {
    await baseline.stop();
    throw err;
  }
  try {
    log(`${name}: both servers up, ${CONNECTIONS} connections each${target.reopened > 0 ? ` (${target.reopened} opened again to land on their group's shard)` : ''}; warming each up ${WARMUP_MS / 1000} s`);
    for (const s of [target, baseline]) await publish(s, WARMUP_MS);
    await sleep(DRAIN_MS);
    const pairs: Array<{ first: string; baseline: WindowResult; ratios: { cpu: number; p99: number; max: number } } & Record<string, unknown>> = [];
    const targetWindows: WindowResult[] = [];
    for (let p = 0; p < PAIRS; p++) {
      const order = p % 2 === 0 ? [baseline, target] : [target, baseline];
      const results = new Map<LoadedServer, WindowResult>();
      for (const s of order) {
        const idle = s === baseline ? target : baseline;
        if (FREEZE_IDLE) {
          s.setFrozen(false);
          await sleep(FREEZE_SETTLE_MS);
          await idle.freeze();
        }
        results.set(s, await runWindow(s, idle, WINDOW_MS));
      }
      const b = results.get(baseline)!;
      const t = results.get(target)!;
      const ratios = { cpu: round(t.cpuUsPerDelivery / b.cpuUsPerDelivery, 3), p99: round(t.p99Ms / b.p99Ms, 3), max: round(t.maxMs / b.maxMs, 3) };
      pairs.push({ first: order[0] === baseline ? 'baseline' : name, baseline: b, [name]: t, ratios });
      targetWindows.push(t);
      log(`  pair ${p + 1}: CPU ${b.cpuUsPerDelivery} / ${t.cpuUsPerDelivery} µs (x${ratios.cpu}), P99 ${b.p99Ms} / ${t.p99Ms} ms (x${ratios.p99}), lost ${b.lost} / ${t.lost}`);
    }
    const blocks: number[] = [];
    // In a block (B T | T B) the first baseline window follows the baseline's last and the
    // second target window the target's first: each server once with the core's caches its own.
    const warm: number[] = [];
    for (let p = 0; p + 1 < PAIRS; p += 2) {
      const targetCpu = targetWindows[p]!.cpuUsPerDelivery + targetWindows[p + 1]!.cpuUsPerDelivery;
      blocks.push(round(targetCpu / (pairs[p]!.baseline.cpuUsPerDelivery + pairs[p + 1]!.baseline.cpuUsPerDelivery), 3));
      warm.push(round(targetWindows[p + 1]!.cpuUsPerDelivery / pairs[p]!.baseline.cpuUsPerDelivery, 3));
    }
    const summary = {
      cpuRatio: quartiles(blocks),
      cpuRatioWarm: quartiles(warm),
      cpuRatioByOrder: {
        targetAfterBaseline: quartiles(pairs.filter((_, p) => p % 2 === 0).map((p) => p.ratios.cpu)),
        targetAfterItself: quartiles(pairs.filter((_, p) => p % 2 === 1).map((p) => p.ratios.cpu)),
      },
      p99Ratio: quartiles(pairs.map((p) => p.ratios.p99)),
      maxRatio: quartiles(pairs.map((p) => p.ratios.max)),
      baselineCpuUsPerDelivery: quartiles(pairs.map((p) => p.baseline.cpuUsPerDelivery)),
      idleTargetCpuShareInBaselineWindows: quartiles(pairs.map((p) => p.baseline.idleOtherCpuShare)),
      // Medians over the windows: where each server's CPU per delivery went, and how often its threads woke per pub.
      byThread: { baseline: threadMedians(pairs.map((p) => p.baseline)), [name]: threadMedians(targetWindows) },
      lost: { baseline: pairs.reduce((sum, p) => sum + p.baseline.lost, 0), [name]: targetWindows.reduce((sum, w) => sum + w.lost, 0) },
    };
    const c = summary.cpuRatio;
    const o = summary.cpuRatioByOrder;
    log(
      `${name} against ${BASELINE}: CPU x${c.median} [${c.q1}..${c.q3}] (range ${c.min}..${c.max}) within blocks of two pairs ` +
        `(x${o.targetAfterBaseline.median} where the target's window followed the baseline's, x${o.targetAfterItself.median} where it followed its own; ` +
        `x${summary.cpuRatioWarm.median} for the windows of each that followed its own); ` +
        `within each pair P99 x${summary.p99Ratio.median}, max x${summary.maxRatio.median}`,
    );
    return { target: name, placement: placementOf(name, 'spread'), summary, pairs };
  } finally {
    await target.stop();
    await baseline.stop();
  }
}

const results = [];
for (const name of targets) results.push(await compare(name));
process.stdout.write(
  `${JSON.stringify(
    {
      benchmark: 'interleaved',
      config: { targets, baseline: BASELINE, baselineMain: BASELINE_MAIN ?? null, freezeIdle: FREEZE_IDLE, pairs: PAIRS, windowS: WINDOW_MS / 1000, warmupS: WARMUP_MS / 1000, connections: CONNECTIONS, groups: GROUPS, rate: RATE, serverNodeArgs: NODE_ARGS },
      pinning: pinningReport(),
      results,
    },
    null,
    2,
  )}\n`,
);

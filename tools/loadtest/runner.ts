/**
 * Runs scenarios: starts (or finds) the server, probes what it supports, and for each
 * scenario spawns the loadgen threads, sets their measurement window, samples the time
 * series once a second, collects and merges their results into a ScenarioReport.
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism, platform } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Histogram } from 'hdr-histogram-js';
import { monoUs } from './clock.js';
import { defaultThreads, LOADTEST_DEFAULTS } from './defaults.js';
import { computeDelivery, emptyDeliveryTotals } from './delivery.js';
import { GRADE_TABLE, gradeScenario, overallGrade } from './grading.js';
import { encodeHistogram, mergeEncoded, percentileCurve, summarize } from '../lib/histogram.js';
import { probeSend, type SendProbe } from './probe.js';
import { REPORT_FORMAT, type RunReport, type ScenarioReport, type SeriesPoint } from './report-types.js';
import { offeredRates, type ScenarioSpec } from './scenarios.js';
import { launchServer, type LaunchedServer } from './server-launcher.js';
import { fetchServerStats, type ServerStats } from './server-stats.js';
import { HISTOGRAM_NAMES, addCounters, emptyCounters, type Counters, type MainToWorker, type WorkerPlan, type WorkerResult, type WorkerToMain } from './types.js';

const LOADGEN_ENTRY = new URL('../workers/loadgen.js', import.meta.url);

/** What the progress display is told, about once a second. */
export interface ProgressUpdate {
  scenario: string;
  index: number;
  total: number;
  phase: 'connecting' | 'warm-up' | 'measuring' | 'draining';
  /** 0..1 of this scenario's expected wall time */
  fraction: number;
  elapsedS: number;
  expectedS: number;
  connections: number;
  deliveriesPerS: number;
  p99Ms: number;
  errors: number;
}

export interface RunOptions {
  scenarios: ScenarioSpec[];
  /** Target server; when absent the runner launches one (see server-launcher). */
  host?: string;
  port?: number;
  path?: string;
  /** Command that starts the server (tests use a fixture); default dist/src/main.js. */
  serverCommand?: string[];
  shards?: number;
  threads?: number;
  connectTimeoutMs?: number;
  fenceMs?: number;
  onProgress?: (u: ProgressUpdate) => void;
  log?: (line: string) => void;
  verbose?: boolean;
  /** Echoed into the report. */
  options?: Record<string, unknown>;
  signal?: AbortSignal;
}

export async function runLoadTest(opts: RunOptions): Promise<RunReport> {
  const log = opts.log ?? (() => {});
  const startedAt = new Date().toISOString();
  const path = opts.path ?? LOADTEST_DEFAULTS.path;
  let server: LaunchedServer | null = null;
  let host = opts.host ?? '127.0.0.1';
  let port = opts.port ?? 0;
  if (opts.host === undefined) {
    log('starting the server…');
    server = await launchServer({
      ...(opts.serverCommand && { command: opts.serverCommand }),
      shards: opts.shards ?? LOADTEST_DEFAULTS.shards,
      ...(opts.verbose && { onLine: (l: string) => log(`[server] ${l}`) }),
    });
    host = server.host;
    port = server.port;
    log(`server ready on ${host}:${port} (pid ${server.pid}, shards ${server.shards ?? '?'})`);
  }
  const runId = randomBytes(3).toString('hex');
  try {
    const probe = await probeSend(host, port, path, `lt${runId}-probe`);
    log(`send: ${probe.note}`);
    const reports: ScenarioReport[] = [];
    for (const [i, spec] of opts.scenarios.entries()) {
      if (opts.signal?.aborted) break;
      log(`scenario ${i + 1}/${opts.scenarios.length}: ${spec.name} — ${spec.description}`);
      const r = await runScenario(spec, { host, port, path, server, probe, runId, index: i, total: opts.scenarios.length, opts });
      reports.push(r);
      log(`scenario ${spec.name}: grade ${r.grade.grade}${r.status === 'failed' ? ` (failed: ${r.error})` : ''}`);
    }
    return {
      format: REPORT_FORMAT,
      startedAt,
      finishedAt: new Date().toISOString(),
      target: { host, port, launched: server !== null, shards: server?.shards ?? null, sendSupported: probe.supported, sendNote: probe.note },
      machine: { cpus: availableParallelism(), platform: platform(), node: process.version },
      options: opts.options ?? {},
      scenarios: reports,
      overall: overallGrade(reports.map((r) => r.grade.grade)),
      gradeTable: GRADE_TABLE,
    };
  } finally {
    if (server) {
      log('stopping the server…');
      await server.stop();
    }
  }
}

interface Ctx {
  host: string;
  port: number;
  path: string;
  server: LaunchedServer | null;
  probe: SendProbe;
  runId: string;
  index: number;
  total: number;
  opts: RunOptions;
}

interface Tick {
  counters: Counters;
  active: number;
  elu: number;
}

async function runScenario(spec: ScenarioSpec, ctx: Ctx): Promise<ScenarioReport> {
  const startedAt = new Date().toISOString();
  const wallStart = monoUs();
  const threads = Math.max(1, Math.min(ctx.opts.threads ?? defaultThreads(), spec.connections));
  const cpuStart = process.cpuUsage();
  const serverCpuStart = ctx.server?.cpuSeconds() ?? null;
  const rssStart = ctx.server?.rssBytes() ?? null;
  let rssPeak = rssStart;
  const workers: Worker[] = [];
  const latest: Array<Tick | null> = new Array<Tick | null>(threads).fill(null);
  let pendingIntervals: string[] = [];
  const finals: Array<WorkerResult | null> = new Array<WorkerResult | null>(threads).fill(null);
  const series: SeriesPoint[] = [];
  const seriesHistograms: string[] = [];
  let measureStartUs = Number.POSITIVE_INFINITY;
  let measureEndUs = Number.POSITIVE_INFINITY;
  let rampStop: string | null = null;
  let statsAtLoad: Promise<ServerStats> | null = null;
  let sampler: NodeJS.Timeout | null = null;
  let onAbort: (() => void) | null = null;
  const expectedS = spec.connections / spec.connectRate + spec.warmupS + spec.durationS + spec.drainS;

  const broadcast = (m: MainToWorker): void => {
    for (const w of workers) w.postMessage(m);
  };

  try {
    const connected = deferred<void>();
    const finished = deferred<void>();
    let connectedCount = 0;
    let finalCount = 0;
    for (let i = 0; i < threads; i++) {
      const w = new Worker(LOADGEN_ENTRY);
      workers.push(w);
      w.on('message', (m: WorkerToMain) => {
        switch (m.type) {
          case 'connected':
            if (++connectedCount === threads) connected.resolve();
            break;
          case 'tick':
            latest[i] = { counters: m.counters, active: m.active, elu: m.elu };
            pendingIntervals.push(m.interval);
            break;
          case 'final':
            finals[i] = m.result;
            if (++finalCount === threads) finished.resolve();
            break;
          case 'fatal':
            finished.reject(new Error(`loadgen thread ${i}: ${m.message}`));
            connected.reject(new Error(`loadgen thread ${i}: ${m.message}`));
            break;
        }
      });
      w.on('error', (err) => {
        finished.reject(err);
        connected.reject(err);
      });
      w.on('exit', (code) => {
        if (finals[i] === null) {
          const err = new Error(`loadgen thread ${i} exited (code ${code}) before reporting`);
          finished.reject(err);
          connected.reject(err);
        }
      });
      const plan: WorkerPlan = {
        workerIndex: i,
        workerCount: threads,
        host: ctx.host,
        port: ctx.port,
        path: ctx.path,
        userPrefix: `lt${ctx.runId}s${ctx.index}-u`,
        groupPrefix: `lt${ctx.runId}s${ctx.index}-g`,
        scenario: spec,
        sendSupported: ctx.probe.supported,
        fenceUs: (ctx.opts.fenceMs ?? LOADTEST_DEFAULTS.fenceMs) * 1000,
        connectTimeoutMs: ctx.opts.connectTimeoutMs ?? LOADTEST_DEFAULTS.connectTimeoutMs,
      };
      w.postMessage({ type: 'init', plan } satisfies MainToWorker);
    }
    onAbort = () => broadcast({ type: 'abort' });
    ctx.opts.signal?.addEventListener('abort', onAbort, { once: true });

    // Sample the time series and drive the progress display once a second.
    let lastSampleUs = monoUs();
    let lastTotals = emptyCounters();
    sampler = setInterval(() => {
      const now = monoUs();
      const dt = (now - lastSampleUs) / 1e6;
      lastSampleUs = now;
      const ticks = latest.filter((t): t is Tick => t !== null);
      const totals = ticks.reduce((acc, t) => addCounters(acc, t.counters), emptyCounters());
      const merged = mergeEncoded(pendingIntervals);
      pendingIntervals = [];
      const rss = ctx.server?.rssBytes() ?? null;
      if (rss !== null && (rssPeak === null || rss > rssPeak)) rssPeak = rss;
      const errorsNow = totals.connectFailed + totals.unexpectedCloses + sumValues(totals.errFrames);
      const errorsBefore = lastTotals.connectFailed + lastTotals.unexpectedCloses + sumValues(lastTotals.errFrames);
      const lat = summarize(merged);
      const point: SeriesPoint = {
        t: round3((now - measureStartUs) / 1e6),
        connections: ticks.reduce((s, t) => s + t.active, 0),
        pubsPerS: round3((totals.pubsSent - lastTotals.pubsSent) / dt),
        deliveriesPerS: round3((totals.deliveries + totals.sendDeliveries - lastTotals.deliveries - lastTotals.sendDeliveries) / dt),
        errorsPerS: round3((errorsNow - errorsBefore) / dt),
        p50Ms: lat.p50Ms,
        p99Ms: lat.p99Ms,
        maxMs: lat.maxMs,
        serverRssBytes: rss,
        generatorElu: round3(Math.max(0, ...ticks.map((t) => t.elu))),
      };
      if (Number.isFinite(measureStartUs)) {
        series.push(point);
        seriesHistograms.push(encodeHistogram(merged));
      }
      // Ramp: stop adding connections once errors in the last second pass the threshold.
      if (spec.kind === 'ramp' && spec.ramp && rampStop === null && now >= measureStartUs && now < measureEndUs) {
        const ops =
          totals.connectAttempts + totals.pubsSent + totals.sendsSent + totals.pingsSent -
          (lastTotals.connectAttempts + lastTotals.pubsSent + lastTotals.sendsSent + lastTotals.pingsSent);
        const errs = errorsNow - errorsBefore;
        if (ops > 0 && errs / ops > spec.ramp.errorThreshold) {
          rampStop = `errors ${((errs / ops) * 100).toFixed(1)}% of operations at ${point.connections} connections (threshold ${(spec.ramp.errorThreshold * 100).toFixed(1)}%)`;
          broadcast({ type: 'ramp-stop', reason: rampStop });
          ctx.opts.log?.(`ramp stopped: ${rampStop}`);
        }
      }
      // The server's own view is taken at the end of the measurement, while the load is still on.
      if (statsAtLoad === null && now >= measureEndUs) statsAtLoad = fetchServerStats(ctx.host, ctx.port);
      lastTotals = totals;
      const elapsedS = (now - wallStart) / 1e6;
      const phase = !Number.isFinite(measureStartUs) ? 'connecting' : now < measureStartUs ? 'warm-up' : now < measureEndUs ? 'measuring' : 'draining';
      ctx.opts.onProgress?.({
        scenario: spec.name,
        index: ctx.index,
        total: ctx.total,
        phase,
        fraction: Math.min(1, elapsedS / expectedS),
        elapsedS,
        expectedS,
        connections: point.connections,
        deliveriesPerS: point.deliveriesPerS,
        p99Ms: point.p99Ms,
        errors: errorsNow,
      });
    }, 1000);

    const connectBudgetMs = (spec.connections / spec.connectRate) * 1000 + (ctx.opts.connectTimeoutMs ?? LOADTEST_DEFAULTS.connectTimeoutMs) + 10_000;
    await withTimeout(connected.promise, connectBudgetMs, 'connecting the scenario\'s connections');
    measureStartUs = monoUs() + spec.warmupS * 1e6;
    measureEndUs = measureStartUs + spec.durationS * 1e6;
    broadcast({ type: 'timeline', measureStartUs, measureEndUs });
    const finishBudgetMs = (spec.warmupS + spec.durationS + spec.drainS) * 1000 + 30_000;
    await withTimeout(finished.promise, finishBudgetMs, 'waiting for the loadgen threads to finish');
    const results = finals as WorkerResult[];
    if (ctx.opts.signal?.aborted) measureEndUs = Math.min(measureEndUs, monoUs());
    const stats = await (statsAtLoad ?? fetchServerStats(ctx.host, ctx.port));
    return buildReport({
      spec,
      ctx,
      startedAt,
      wallSeconds: (monoUs() - wallStart) / 1e6,
      measureStartUs,
      measureEndUs,
      results,
      series,
      seriesHistograms,
      rampStop,
      cpuStart,
      serverCpuStart,
      rssStart,
      rssPeak,
      stats,
      threads,
    });
  } catch (err) {
    return failedReport(spec, startedAt, (monoUs() - wallStart) / 1e6, (err as Error).message);
  } finally {
    if (sampler) clearInterval(sampler);
    if (onAbort) ctx.opts.signal?.removeEventListener('abort', onAbort);
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

interface BuildInput {
  spec: ScenarioSpec;
  ctx: Ctx;
  startedAt: string;
  wallSeconds: number;
  measureStartUs: number;
  measureEndUs: number;
  results: WorkerResult[];
  series: SeriesPoint[];
  seriesHistograms: string[];
  rampStop: string | null;
  cpuStart: NodeJS.CpuUsage;
  serverCpuStart: number | null;
  rssStart: number | null;
  rssPeak: number | null;
  stats: ServerStats;
  threads: number;
}

function buildReport(b: BuildInput): ScenarioReport {
  const { spec, results } = b;
  const c = results.reduce((acc, r) => addCounters(acc, r.counters), emptyCounters());
  const h = Object.fromEntries(HISTOGRAM_NAMES.map((name) => [name, mergeEncoded(results.map((r) => r.histograms[name]))])) as Record<
    (typeof HISTOGRAM_NAMES)[number],
    Histogram
  >;
  const seconds = Math.max(1e-6, (b.measureEndUs - b.measureStartUs) / 1e6);
  const delivery = computeDelivery(
    results.map((r) => r.delivery),
    { startUs: b.measureStartUs, endUs: b.measureEndUs, fenceUs: (b.ctx.opts.fenceMs ?? LOADTEST_DEFAULTS.fenceMs) * 1000 },
  );
  const fanoutMembers = Math.min(spec.groupSize, spec.connections);
  const sendCounts = b.ctx.probe.supported && c.sendsUnsupported === 0;
  // What the scenario offered. Ramp, spike and churn change who is online all the time, so
  // there it is what was owed (delivery.ts); elsewhere it is the schedule: pubs due × group size.
  const owedPerS = (delivery.pubExpected + delivery.sendExpected) / seconds;
  const offeredPerS =
    spec.kind !== 'steady' ? owedPerS : (c.window.pubsSent * fanoutMembers + (sendCounts ? c.window.sendsSent : 0)) / seconds;
  const deliveredPerS = (delivery.pubReceived + delivery.sendReceived) / seconds;

  const errFrameCount = sumValues(c.errFrames);
  const errors = c.connectFailed + c.unexpectedCloses + errFrameCount + delivery.pubsUnacknowledged;
  const operations = c.connectAttempts + c.pubsSent + c.sendsSent - c.sendsUnsupported + c.pingsSent;
  const errorRate = operations > 0 ? errors / operations : 0;
  const pubLossRate = delivery.pubExpected > 0 ? delivery.pubLost / delivery.pubExpected : 0;
  const sendLossRate = delivery.sendExpected > 0 ? delivery.sendLost / delivery.sendExpected : 0;
  const owed = delivery.pubExpected + delivery.sendExpected;
  const lossRate = owed > 0 ? (delivery.pubLost + delivery.sendLost) / owed : 0;

  const lat = {
    fanout: summarize(h.fanout),
    fanoutUncorrected: summarize(h.fanoutRaw),
    send: summarize(h.send),
    sendUncorrected: summarize(h.sendRaw),
    ping: summarize(h.ping),
    pingUncorrected: summarize(h.pingRaw),
    connect: summarize(h.connect),
    pubAck: summarize(h.pubAck),
    scheduleLag: summarize(h.scheduleLag),
  };
  const gradedLatency = lat.fanout.count > 0 ? lat.fanout : lat.ping;

  // Was the generator the bottleneck? Its threads' event loops saturated, or its schedule slipping.
  const scheduled = c.window.pubsSent + c.window.sendsSent + c.window.pingsSent;
  const lateFraction = scheduled > 0 ? c.lateSends / scheduled : 0;
  const genReasons: string[] = [];
  results.forEach((r, i) => {
    if (r.elu >= 0.9) genReasons.push(`loadgen thread ${i} event loop ${(r.elu * 100).toFixed(0)}% busy`);
  });
  if (lateFraction > 0.01) genReasons.push(`${(lateFraction * 100).toFixed(1)}% of scheduled messages left more than 10 ms late`);
  if (lat.scheduleLag.p99Ms > 10) genReasons.push(`send-schedule lag P99 ${lat.scheduleLag.p99Ms.toFixed(1)} ms`);
  const cpu = process.cpuUsage(b.cpuStart);
  const cpuPercent = round3(((cpu.user + cpu.system) / 1e6 / b.wallSeconds) * 100);

  const grade = gradeScenario({ p95Ms: gradedLatency.p95Ms, p99Ms: gradedLatency.p99Ms, errorRate, lossRate, deliveredPerS, offeredPerS });
  const notes: string[] = [];
  if (genReasons.length > 0) notes.push(`the generator may have limited this result: ${genReasons.join('; ')}`);
  if (!sendCounts && spec.rates.send > 0) notes.push(`send was not tested: ${b.ctx.probe.supported ? 'unsupported by the server' : b.ctx.probe.note}`);

  const serverCpuEnd = b.ctx.server?.cpuSeconds() ?? null;
  const rssEnd = b.ctx.server?.rssBytes() ?? null;
  const offered = offeredRates(spec);
  const report: ScenarioReport = {
    name: spec.name,
    description: spec.description,
    kind: spec.kind,
    spec,
    status: 'ok',
    startedAt: b.startedAt,
    wallSeconds: round3(b.wallSeconds),
    measuredSeconds: round3(seconds),
    connections: {
      target: spec.connections,
      peak: Math.max(results.reduce((s, r) => s + r.peakActive, 0), 0),
      attempts: c.connectAttempts,
      ok: c.connectOk,
      failed: c.connectFailed,
      successRate: c.connectAttempts > 0 ? c.connectOk / c.connectAttempts : 0,
      failures: c.connectFailures,
      unexpectedCloses: c.unexpectedCloses,
      closeCodes: c.closeCodes,
    },
    offered: { ...offered, deliveriesPerS: round3(offeredPerS) },
    throughput: {
      pubsPerS: round3(c.window.pubsSent / seconds),
      deliveriesPerS: round3(c.window.deliveries / seconds),
      sendDeliveriesPerS: round3(c.window.sendDeliveries / seconds),
      totalDeliveredPerS: round3(deliveredPerS),
      bytesInPerS: round3(c.bytesIn / b.wallSeconds),
      bytesOutPerS: round3(c.bytesOut / b.wallSeconds),
    },
    latency: lat,
    percentileCurves: {
      fanout: percentileCurve(h.fanout),
      fanoutUncorrected: percentileCurve(h.fanoutRaw),
      send: percentileCurve(h.send),
      ping: percentileCurve(h.ping),
      connect: percentileCurve(h.connect),
    },
    delivery: { ...delivery, pubLossRate, sendLossRate, duplicates: c.duplicateDeliveries, deliveriesTotal: c.deliveries + c.sendDeliveries },
    errors: {
      count: errors,
      operations,
      rate: errorRate,
      errFrames: c.errFrames,
      pubsRejected: c.pubsRejected,
      sendsRejected: c.sendsRejected,
      pubsDeferred: c.pubsDeferred,
    },
    send: {
      supported: sendCounts,
      note: sendCounts ? 'supported' : c.sendsUnsupported > 0 ? 'unsupported by the server (E_BAD_FRAME unknown op)' : b.ctx.probe.note,
      unsupportedReplies: c.sendsUnsupported,
    },
    generator: {
      threads: b.threads,
      transport: results[0]?.transport ?? '',
      eluPerThread: results.map((r) => round3(r.elu)),
      cpuPercent,
      lateSends: c.lateSends,
      lateFraction,
      maxBufferedBytes: c.maxBufferedAmount,
      bottleneck: genReasons.length > 0,
      reasons: genReasons,
    },
    server: {
      launched: b.ctx.server !== null,
      rssStartBytes: b.rssStart,
      rssEndBytes: rssEnd,
      rssPeakBytes: b.rssPeak,
      cpuPercent: serverCpuEnd !== null && b.serverCpuStart !== null ? round3(((serverCpuEnd - b.serverCpuStart) / b.wallSeconds) * 100) : null,
      stats: b.stats,
    },
    timeSeries: b.series,
    grade,
    notes,
  };
  if (spec.kind === 'ramp' && spec.ramp) {
    const peak = report.connections.peak;
    const stoppedBy = b.rampStop ? 'errors' : peak >= spec.ramp.max ? 'limit' : 'duration';
    report.ramp = {
      peakConnections: peak,
      stoppedBy,
      note: b.rampStop ?? (stoppedBy === 'limit' ? `reached the limit of ${spec.ramp.max} connections` : `duration ended at ${peak} connections`),
    };
  }
  if (spec.drift) report.drift = drift(b.series, b.seriesHistograms, spec.drift.windowS, seconds);
  return report;
}

/** Latency and memory in the first window of the measurement against the last one. */
function drift(series: SeriesPoint[], hists: string[], windowS: number, seconds: number): ScenarioReport['drift'] {
  const pick = (from: number, to: number): number[] => series.flatMap((p, i) => (p.t > from && p.t <= to ? [i] : []));
  const first = pick(0, windowS);
  const last = pick(seconds - windowS, seconds);
  const lat = (idx: number[]) => summarize(mergeEncoded(idx.map((i) => hists[i]!)));
  const rss = (idx: number[]): number | null => {
    const v = idx.map((i) => series[i]!.serverRssBytes).filter((x): x is number => x !== null);
    return v.length > 0 ? Math.round(v.reduce((s, x) => s + x, 0) / v.length) : null;
  };
  const a = lat(first);
  const z = lat(last);
  return { windowS, p50FirstMs: a.p50Ms, p50LastMs: z.p50Ms, p99FirstMs: a.p99Ms, p99LastMs: z.p99Ms, serverRssFirstBytes: rss(first), serverRssLastBytes: rss(last) };
}

function failedReport(spec: ScenarioSpec, startedAt: string, wallSeconds: number, error: string): ScenarioReport {
  const empty = summarize(mergeEncoded([]));
  return {
    name: spec.name,
    description: spec.description,
    kind: spec.kind,
    spec,
    status: 'failed',
    error,
    startedAt,
    wallSeconds: round3(wallSeconds),
    measuredSeconds: 0,
    connections: { target: spec.connections, peak: 0, attempts: 0, ok: 0, failed: 0, successRate: 0, failures: {}, unexpectedCloses: 0, closeCodes: {} },
    offered: offeredRates(spec),
    throughput: { pubsPerS: 0, deliveriesPerS: 0, sendDeliveriesPerS: 0, totalDeliveredPerS: 0, bytesInPerS: 0, bytesOutPerS: 0 },
    latency: { fanout: empty, fanoutUncorrected: empty, send: empty, sendUncorrected: empty, ping: empty, pingUncorrected: empty, connect: empty, pubAck: empty, scheduleLag: empty },
    percentileCurves: { fanout: [], fanoutUncorrected: [], send: [], ping: [], connect: [] },
    delivery: {
      ...emptyDeliveryTotals(),
      pubLossRate: 0,
      sendLossRate: 0,
      duplicates: 0,
      deliveriesTotal: 0,
    },
    errors: { count: 0, operations: 0, rate: 0, errFrames: {}, pubsRejected: 0, sendsRejected: 0, pubsDeferred: 0 },
    send: { supported: false, note: 'scenario failed', unsupportedReplies: 0 },
    generator: { threads: 0, transport: '', eluPerThread: [], cpuPercent: 0, lateSends: 0, lateFraction: 0, maxBufferedBytes: 0, bottleneck: false, reasons: [] },
    server: { launched: false, rssStartBytes: null, rssEndBytes: null, rssPeakBytes: null, cpuPercent: null, stats: { available: false, reason: 'scenario failed', latencies: [], resources: {} } },
    timeSeries: [],
    grade: { grade: 'F', points: 0, reasons: [`the scenario failed: ${error}`] },
    notes: [],
  };
}

function sumValues(r: Record<string, number>): number {
  let s = 0;
  for (const v of Object.values(r)) s += v;
  return s;
}

function round3(x: number): number {
  return Number.isFinite(x) ? Math.round(x * 1000) / 1000 : 0;
}

function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: Error) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {});
  return { promise, resolve, reject };
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error(`timed out ${what} (${Math.round(ms / 1000)} s)`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

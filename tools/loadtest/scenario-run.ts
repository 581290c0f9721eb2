/**
 * Runs one scenario: spawns its loadgen threads, waits until they have connected, sets the
 * measurement window (after the warm-up), samples it once a second, waits for the threads'
 * results and builds the scenario's report. A scenario that fails (a thread died, a deadline
 * passed) gets a failed report; the run goes on.
 */
import { monoUs } from './clock.js';
import { HISTORY_GROUP_PREFIX, LOADTEST_DEFAULTS, defaultThreads } from './defaults.js';
import { LoadgenThreads } from './loadgen-threads.js';
import type { SendProbe } from './probe.js';
import { withTimeout } from './promises.js';
import type { ScenarioReport } from './report-types.js';
import type { RunOptions } from './runner.js';
import { ScenarioSampler } from './scenario-sampler.js';
import { buildReport, failedReport } from './scenario-report.js';
import type { ScenarioSpec } from './scenarios.js';
import type { LaunchedServer } from './server-launcher.js';
import { fetchServerStats } from './server-stats.js';
import { markServerHistograms, serverWindow } from './server-window.js';
import type { WorkerResult } from './types.js';

/** What every scenario of a run shares: the target, what it supports, and the run's options. */
export interface ScenarioContext {
  host: string;
  port: number;
  path: string;
  server: LaunchedServer | null;
  probe: SendProbe;
  /** Prefixes user and group names, so runs against one server do not meet. */
  runId: string;
  index: number;
  total: number;
  opts: RunOptions;
}

export async function runScenario(spec: ScenarioSpec, ctx: ScenarioContext): Promise<ScenarioReport> {
  const startedAt = new Date().toISOString();
  const wallStart = monoUs();
  const threadCount = Math.max(1, Math.min(ctx.opts.threads ?? defaultThreads(), spec.connections));
  const cpuStart = process.cpuUsage();
  const serverCpuStart = ctx.server?.cpuSeconds() ?? null;
  const rssStart = ctx.server?.rssBytes() ?? null;
  const fenceUs = (ctx.opts.fenceMs ?? LOADTEST_DEFAULTS.fenceMs) * 1000;
  const connectTimeoutMs = ctx.opts.connectTimeoutMs ?? LOADTEST_DEFAULTS.connectTimeoutMs;
  let threads: LoadgenThreads | null = null;
  let sampler: ScenarioSampler | null = null;
  let onAbort: (() => void) | null = null;

  try {
    const t = (threads = new LoadgenThreads(threadCount, (i) => ({
      workerIndex: i,
      workerCount: threadCount,
      host: ctx.host,
      port: ctx.port,
      spread: ctx.opts.spread ?? [],
      path: ctx.path,
      userPrefix: `lt${ctx.runId}s${ctx.index}-u`,
      // The reconnect scenario's groups keep history (the order check needs their offsets).
      groupPrefix: `${spec.kind === 'reconnect' ? HISTORY_GROUP_PREFIX : ''}lt${ctx.runId}s${ctx.index}-g`,
      scenario: spec,
      sendSupported: ctx.probe.supported,
      fenceUs,
      connectTimeoutMs,
      realtime: ctx.opts.realtime ?? false,
      tls: ctx.opts.tls ?? false,
    })));
    onAbort = () => t.broadcast({ type: 'abort' });
    ctx.opts.signal?.addEventListener('abort', onAbort, { once: true });

    const sm = (sampler = new ScenarioSampler({
      spec,
      threads: t,
      host: ctx.host,
      port: ctx.port,
      ...(ctx.opts.monitoringToken !== undefined && { token: ctx.opts.monitoringToken }),
      tls: ctx.opts.tls ?? false,
      server: ctx.server,
      rssStart,
      wallStartUs: wallStart,
      index: ctx.index,
      total: ctx.total,
      ...(ctx.opts.onProgress && { onProgress: ctx.opts.onProgress }),
      ...(ctx.opts.log && { log: ctx.opts.log }),
    }));
    sm.start();

    const connectBudgetMs = (spec.connections / spec.connectRate) * 1000 + connectTimeoutMs + 10_000;
    await withTimeout(t.connected.promise, connectBudgetMs, 'connecting the scenario\'s connections');
    sm.measureStartUs = monoUs() + spec.warmupS * 1e6;
    sm.measureEndUs = sm.measureStartUs + spec.durationS * 1e6;
    t.broadcast({ type: 'timeline', measureStartUs: sm.measureStartUs, measureEndUs: sm.measureEndUs });
    sm.markServerWindow();
    const finishBudgetMs = (spec.warmupS + spec.durationS + spec.drainS) * 1000 + 30_000;
    await withTimeout(t.finished.promise, finishBudgetMs, 'waiting for the loadgen threads to finish');
    const results = t.finals as WorkerResult[];
    if (ctx.opts.signal?.aborted) sm.measureEndUs = Math.min(sm.measureEndUs, monoUs());
    const stats = await (sm.statsAtLoad ?? fetchServerStats(ctx.host, ctx.port, 2000, ctx.opts.monitoringToken, ctx.opts.tls));
    // Ended early (Ctrl-C): the window ends now.
    sm.windowEnd ??= markServerHistograms(sm.target());
    const window = serverWindow(await (sm.windowStart ?? 'the measured window never started'), await sm.windowEnd);
    return buildReport({
      spec,
      server: ctx.server,
      probe: ctx.probe,
      fenceUs,
      startedAt,
      wallSeconds: (monoUs() - wallStart) / 1e6,
      measureStartUs: sm.measureStartUs,
      measureEndUs: sm.measureEndUs,
      results,
      series: sm.series,
      seriesHistograms: sm.seriesHistograms,
      rampStop: sm.rampStop,
      cpuStart,
      serverCpuStart,
      rssStart,
      rssPeak: sm.rssPeak,
      stats,
      window,
      threads: threadCount,
    });
  } catch (err) {
    return failedReport(spec, startedAt, (monoUs() - wallStart) / 1e6, (err as Error).message);
  } finally {
    sampler?.stop();
    if (onAbort) ctx.opts.signal?.removeEventListener('abort', onAbort);
    await threads?.terminate();
  }
}

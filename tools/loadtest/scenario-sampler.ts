/**
 * Once a second during a scenario: one point of the time series (connections, rates, errors,
 * latency of that second, server RSS, generator load), the ramp's error check, the server's
 * /stats while the load is on, and the progress display.
 */
import { monoUs } from './clock.js';
import { encodeHistogram, mergeEncoded, summarize } from '../lib/histogram.js';
import type { LoadgenThreads, ThreadTick } from './loadgen-threads.js';
import type { SeriesPoint } from './report-types.js';
import { round3, sumValues } from './report-math.js';
import type { ProgressUpdate } from './runner.js';
import type { ScenarioSpec } from './scenarios.js';
import type { LaunchedServer } from './server-launcher.js';
import { fetchServerStats, type ServerStats } from './server-stats.js';
import { markServerHistograms, type WindowTarget } from './server-window.js';
import { addCounters, emptyCounters, type Counters } from './types.js';

export interface SamplerSetup {
  spec: ScenarioSpec;
  threads: LoadgenThreads;
  host: string;
  port: number;
  /** websocket.monitoring.token of the target, when it has one. */
  token?: string;
  /** The target speaks TLS (wss://, https://). */
  tls: boolean;
  server: LaunchedServer | null;
  /** The server's RSS when the scenario started, and when it did (monoUs). */
  rssStart: number | null;
  wallStartUs: number;
  /** For the progress display: this scenario's place in the run. */
  index: number;
  total: number;
  onProgress?: (u: ProgressUpdate) => void;
  log?: (line: string) => void;
}

export class ScenarioSampler {
  readonly series: SeriesPoint[] = [];
  /** Each point's merged latency histogram, encoded: the drift comparison reads them. */
  readonly seriesHistograms: string[] = [];
  rssPeak: number | null;
  /** Why the ramp stopped adding connections; null while it has not. */
  rampStop: string | null = null;
  /** The server's /stats, read at the end of the measurement while the load is still on. */
  statsAtLoad: Promise<ServerStats> | null = null;
  measureStartUs = Number.POSITIVE_INFINITY;
  measureEndUs = Number.POSITIVE_INFINITY;
  /** The server's histograms read as the measured window starts and as it ends (server-window.ts). */
  windowStart: ReturnType<typeof markServerHistograms> | null = null;
  windowEnd: ReturnType<typeof markServerHistograms> | null = null;
  private readonly windowTimers: NodeJS.Timeout[] = [];

  private readonly expectedS: number;
  private lastSampleUs = monoUs();
  private lastTotals: Counters = emptyCounters();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly s: SamplerSetup) {
    const spec = s.spec;
    this.rssPeak = s.rssStart;
    this.expectedS = spec.connections / spec.connectRate + spec.warmupS + spec.durationS + spec.drainS;
  }

  start(): void {
    this.timer = setInterval(() => this.sample(), 1000);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    for (const timer of this.windowTimers) clearTimeout(timer);
  }

  /** Once the window is set: reads the server's histograms at its start and at its end, on time rather than at the next sample. */
  markServerWindow(): void {
    const at = (us: number, mark: () => void): void => {
      this.windowTimers.push(setTimeout(mark, Math.max(0, (us - monoUs()) / 1000)));
    };
    at(this.measureStartUs, () => (this.windowStart = markServerHistograms(this.target())));
    at(this.measureEndUs, () => (this.windowEnd ??= markServerHistograms(this.target())));
  }

  target(): WindowTarget {
    return { host: this.s.host, port: this.s.port, tls: this.s.tls, ...(this.s.token !== undefined && { token: this.s.token }) };
  }

  private sample(): void {
    const { spec, threads } = this.s;
    const now = monoUs();
    const dt = (now - this.lastSampleUs) / 1e6;
    this.lastSampleUs = now;
    const last = this.lastTotals;
    const ticks = threads.latest.filter((t): t is ThreadTick => t !== null);
    const totals = ticks.reduce((acc, t) => addCounters(acc, t.counters), emptyCounters());
    const merged = mergeEncoded(threads.takeIntervals());
    const rss = this.s.server?.rssBytes() ?? null;
    if (rss !== null && (this.rssPeak === null || rss > this.rssPeak)) this.rssPeak = rss;
    const errorsNow = totals.connectFailed + totals.unexpectedCloses + sumValues(totals.errFrames);
    const errorsBefore = last.connectFailed + last.unexpectedCloses + sumValues(last.errFrames);
    const lat = summarize(merged);
    const point: SeriesPoint = {
      t: round3((now - this.measureStartUs) / 1e6),
      connections: ticks.reduce((sum, t) => sum + t.active, 0),
      pubsPerS: round3((totals.pubsSent - last.pubsSent) / dt),
      deliveriesPerS: round3((totals.deliveries + totals.sendDeliveries - last.deliveries - last.sendDeliveries) / dt),
      errorsPerS: round3((errorsNow - errorsBefore) / dt),
      p50Ms: lat.p50Ms,
      p99Ms: lat.p99Ms,
      maxMs: lat.maxMs,
      serverRssBytes: rss,
      generatorElu: round3(Math.max(0, ...ticks.map((t) => t.elu))),
    };
    if (Number.isFinite(this.measureStartUs)) {
      this.series.push(point);
      this.seriesHistograms.push(encodeHistogram(merged));
    }
    // Ramp: stop adding connections once errors in the last second pass the threshold.
    if (spec.kind === 'ramp' && spec.ramp && this.rampStop === null && now >= this.measureStartUs && now < this.measureEndUs) {
      const ops =
        totals.connectAttempts + totals.pubsSent + totals.sendsSent + totals.pingsSent -
        (last.connectAttempts + last.pubsSent + last.sendsSent + last.pingsSent);
      const errs = errorsNow - errorsBefore;
      if (ops > 0 && errs / ops > spec.ramp.errorThreshold) {
        this.rampStop = `errors ${((errs / ops) * 100).toFixed(1)}% of operations at ${point.connections} connections (threshold ${(spec.ramp.errorThreshold * 100).toFixed(1)}%)`;
        threads.broadcast({ type: 'ramp-stop', reason: this.rampStop });
        this.s.log?.(`ramp stopped: ${this.rampStop}`);
      }
    }
    if (this.statsAtLoad === null && now >= this.measureEndUs) this.statsAtLoad = fetchServerStats(this.s.host, this.s.port, 2000, this.s.token, this.s.tls);
    this.lastTotals = totals;
    const elapsedS = (now - this.s.wallStartUs) / 1e6;
    const phase = !Number.isFinite(this.measureStartUs) ? 'connecting' : now < this.measureStartUs ? 'warm-up' : now < this.measureEndUs ? 'measuring' : 'draining';
    this.s.onProgress?.({
      scenario: spec.name,
      index: this.s.index,
      total: this.s.total,
      phase,
      fraction: Math.min(1, elapsedS / this.expectedS),
      elapsedS,
      expectedS: this.expectedS,
      connections: point.connections,
      deliveriesPerS: point.deliveriesPerS,
      p99Ms: point.p99Ms,
      errors: errorsNow,
    });
  }
}

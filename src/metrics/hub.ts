/**
 * The primary's side of the metrics: every thread's report (the shards' over their rings to the
 * broker, the primary's own directly) is decoded once and merged with hdr `add`, so that every
 * percentile shown anywhere is read off one merged histogram, never averaged from per-thread
 * percentiles. Three windows: the last interval, since start, and since the last `stats` log
 * line. Once per interval publish() merges its own report, samples resources and rings, checks
 * the alerts, and asks every shard for its next report; that interval's figures (the view) are
 * rendered into the shared snapshot area the shards serve from (/metrics, the /stats additions,
 * /alerts, /stats/histograms) only when a shard asks for a document (renderWanted()).
 *
 * The primary asks rather than each shard reporting on its own timer: timers of equal period
 * drift in phase, and a shard's report would then now and then land twice in one interval and
 * not at all in the next. Asked, each shard answers once per interval, and the last interval is
 * exactly the reports that came in since the previous publish (each counted once).
 */
import type { HistoryStats } from '../broker/history.js';
import type { Config } from '../config/schema.js';
import type { StoreDisk } from '../store/disk-room.js';
import type { ShardSnapshot, ShardTable } from '../shared/shard-table.js';
import { LINKS } from '../shared/shard-table.js';
import { byName, Counter, errorCounter, type MessagingCounterName } from '../shared/shard-counters.js';
import type { Logger } from '../util/logger.js';
import { Alerts, type ActiveAlert, type AlertEvent, type AlertStatus } from './alerts.js';
import { ExportFile } from './export-file.js';
import { BucketCounts } from './bucket-counts.js';
import { addSparseCounts, newHistogram, type Histogram, type Summary } from './hdr.js';
import { Latency, LATENCIES, type LatencyName } from './latencies.js';
import { overviewFromView } from './overview.js';
import { jsonLine } from './overview-format.js';
import { BUCKETS_US, renderPrometheus } from './prometheus.js';
import { PRIMARY_THREAD, reportFromFields, type ThreadReport } from './report.js';
import { ResourceSampler, type ResourceSample } from './resources.js';
import { RingGauges, type RingBuffers, type RingFill } from './ring-fill.js';
import { SnapshotDoc, type SnapshotDocValue, type SnapshotWriter } from './snapshot.js';
import { renderAlertsJson, renderHistogramsJson, renderStatsJson } from './stats-json.js';
import { ThreadMetrics } from './thread-metrics.js';

export interface MetricsHubOptions {
  table: ShardTable;
  monitoring: Config['websocket']['monitoring'];
  maxConnections: number;
  version: string;
  log: Logger;
  snapshot: SnapshotWriter;
  rings: RingBuffers;
  broker(): { stats: Readonly<Record<MessagingCounterName, number>>; depth: { stored: number; inflight: number }; history: HistoryStats | null; disk: StoreDisk | null };
  /** Asks every shard that is up for its report (it answers with a METRICS record). */
  requestReports(): void;
}

/** One merged latency: its figures over the last interval and since start, and the since-start histogram. */
export interface MergedLatency {
  name: LatencyName;
  interval: Summary;
  total: Summary;
  /** The since-start histogram's cumulative counts at BUCKETS_US (the /metrics buckets), read with `total`: the histogram may take more reports before it is rendered. */
  buckets: readonly number[];
  histogram: Histogram;
}

/** Everything one render shows, computed once per interval. */
export interface MetricsView {
  at: number;
  startedAt: number;
  intervalS: number;
  version: string;
  latency: MergedLatency[];
  /** The threads whose last report is recent, primary first. */
  threads: ThreadReport[];
  shards: ShardSnapshot[];
  connections: number;
  peakConnections: number;
  maxConnections: number;
  broker: Readonly<Record<MessagingCounterName, number>>;
  depth: { stored: number; inflight: number };
  /** null: no group keeps history, or cluster mode (kept in Redis). */
  history: HistoryStats | null;
  /** null: cluster mode (no store on this node's disk). */
  disk: StoreDisk | null;
  rings: RingFill[];
  resources: ResourceSample;
  alerts: { statuses: AlertStatus[]; active: ActiveAlert[]; recent: readonly AlertEvent[] };
}

/** How each document is rendered from a view. */
const RENDERERS: ReadonlyArray<readonly [SnapshotDocValue, (view: MetricsView) => string]> = [
  [SnapshotDoc.METRICS, renderPrometheus],
  [SnapshotDoc.STATS, renderStatsJson],
  [SnapshotDoc.ALERTS, renderAlertsJson],
  [SnapshotDoc.HISTOGRAMS, renderHistogramsJson],
];

export class MetricsHub {
  /** The primary thread's own recorder: the broker records the ack latency here. */
  readonly primary = new ThreadMetrics();
  /** Since start, merged: the counts the figures are read from, and the histogram GET /stats/histograms encodes. */
  private readonly total = LATENCIES.map(() => new BucketCounts());
  private readonly totalHistogram = LATENCIES.map(() => newHistogram());
  private readonly logWindow = LATENCIES.map(() => new BucketCounts());
  private readonly interval = LATENCIES.map(() => new BucketCounts());
  /** Each thread's last report, for its own figures (heap, utilisation, per-thread latency), and the publish it came after. */
  private readonly latest = new Map<number, { report: ThreadReport; after: number }>();
  private publishes = 0;
  private stopped = false;
  /** The last interval's figures, what documents are rendered from, and its number (snapshot.ts's VIEW). */
  private lastView: MetricsView | null = null;
  private viewNumber = 0;
  /** Documents that did not fit their snapshot area at their last render (logged once until they fit). */
  private readonly tooLarge = new Set<SnapshotDocValue>();
  private readonly resources = new ResourceSampler();
  private readonly ringGauges: RingGauges;
  private readonly alerts: Alerts;
  private readonly startedAt = Date.now();
  private previousErrors = 0;
  private previousFrames = 0;
  private badRecords = 0;
  /** monitoring.export_file, when set: the overview appended once per interval. */
  private readonly exportFile: ExportFile | null;

  constructor(private readonly options: MetricsHubOptions) {
    this.ringGauges = new RingGauges(options.rings);
    this.alerts = new Alerts(options.monitoring, options.log);
    const { export_file, export_max_bytes, export_keep } = options.monitoring;
    this.exportFile = export_file === '' ? null : new ExportFile({ file: export_file, maxBytes: export_max_bytes, keep: export_keep }, options.log);
  }

  start(): void {
    this.primary.monitorEventLoop();
  }

  stop(): void {
    this.stopped = true;
    this.primary.stop();
    void this.exportFile?.close();
  }

  /** A METRICS record from `shard`'s ring (its fields: src/metrics/report.ts). */
  acceptRecord(shard: number, fields: unknown[]): void {
    try {
      this.accept({ ...reportFromFields(fields), thread: shard });
    } catch (err) {
      // Our own shards wrote it: a bad one is a bug, logged once rather than every interval.
      if (this.badRecords++ === 0) this.options.log.error({ code: 'E_INTERNAL', shard, err }, 'bad METRICS record');
    }
  }

  accept(report: ThreadReport): void {
    report.histograms.forEach((pairs, kind) => {
      if (pairs.length === 0) return;
      this.interval[kind]!.add(pairs);
      this.total[kind]!.add(pairs);
      addSparseCounts(this.totalHistogram[kind]!, pairs);
      this.logWindow[kind]!.add(pairs);
    });
    this.latest.set(report.thread, { report, after: this.publishes });
  }

  /** Once per interval, in one go: merge, sample, check the alerts, render what was asked for; returns the view. */
  publish(now = Date.now()): MetricsView {
    this.acceptOwnReport();
    const view = this.merge(now);
    this.renderWanted();
    this.finishInterval(view);
    return view;
  }

  /**
   * publish() over two event-loop turns: its own report, merge, sample and alerts; then the
   * export line and the request for the next reports. The broker, on this thread, handles its
   * records in between, and on a core shared with a shard (one pinned core, or more threads than
   * cores) the shard waits at most one turn for it. In one go, with the four documents rendered
   * every interval, it held the loop 5 ms per interval under durable-send load.
   */
  publishSpread(now = Date.now()): void {
    this.acceptOwnReport();
    setImmediate(() => {
      if (this.stopped) return;
      const view = this.merge(now);
      setImmediate(() => {
        if (!this.stopped) this.finishInterval(view);
      });
    });
  }

  /**
   * Renders, from the last interval's view, each document a shard asked for since the last
   * call (a METRICS_WANTED record wakes the primary for it; publish() calls it too, for a
   * request made before the first view).
   */
  renderWanted(): void {
    const view = this.lastView;
    if (view === null) return;
    const { snapshot, log } = this.options;
    for (const [doc, render] of RENDERERS) {
      if (!snapshot.takeWanted(doc)) continue;
      if (snapshot.write(doc, render(view), this.viewNumber)) this.tooLarge.delete(doc);
      else if (!this.tooLarge.has(doc)) {
        this.tooLarge.add(doc);
        log.error({ code: 'E_INTERNAL', doc }, 'a metrics document outgrew its snapshot area; the previous one is served');
      }
    }
  }

  private acceptOwnReport(): void {
    this.publishes++;
    this.accept(this.primary.report(PRIMARY_THREAD));
  }

  /** The interval's figures (the interval histograms start over). */
  private merge(now: number): MetricsView {
    const { table, monitoring } = this.options;
    const threads: ThreadReport[] = [];
    for (const [thread, { report, after }] of [...this.latest].sort(([a], [b]) => a - b)) {
      // A thread that answered none of the last three requests (a dead or stalled shard) is not listed.
      if (this.publishes - after <= 3) threads.push(report);
      else if (thread !== PRIMARY_THREAD && !table.isUp(thread)) this.latest.delete(thread);
    }
    const latency = LATENCIES.map((name, kind) => {
      const interval = this.interval[kind]!;
      const total = this.total[kind]!;
      const merged = { name, interval: interval.summary(), total: total.summary(), buckets: total.cumulative(BUCKETS_US), histogram: this.totalHistogram[kind]! };
      interval.clear();
      return merged;
    });
    const broker = this.options.broker();
    const resources = this.resources.sample();
    this.alerts.evaluate(
      {
        latencyMs: { pub: inMs(latency[Latency.pub]!.interval), send: inMs(latency[Latency.send]!.interval) },
        cpuRatio: resources.cpuRatio,
        memoryRatio: resources.memoryRatio,
        ...this.intervalErrors(table),
        queueDepth: broker.depth.stored,
        diskUsedRatio: broker.disk?.fsUsedRatio ?? null,
        longestLinkWaitS: longestLinkWait(table, now) / 1000,
      },
      now,
    );
    const view: MetricsView = {
      at: now,
      startedAt: this.startedAt,
      intervalS: monitoring.metrics_collection_interval,
      version: this.options.version,
      latency,
      threads,
      shards: Array.from({ length: table.shards }, (_, shard) => table.snapshot(shard)),
      connections: table.totalConnections(),
      peakConnections: table.peakConnections(),
      maxConnections: this.options.maxConnections,
      broker: broker.stats,
      depth: broker.depth,
      history: broker.history,
      disk: broker.disk,
      rings: this.ringGauges.read(),
      resources,
      alerts: { statuses: this.alerts.statuses(), active: this.alerts.active(), recent: this.alerts.history() },
    };
    this.lastView = view;
    this.options.snapshot.setView(++this.viewNumber);
    return view;
  }

  /** The interval's end: its line in the export file, and the request for the shards' next reports. */
  private finishInterval(view: MetricsView): void {
    this.exportFile?.append(jsonLine(overviewFromView(view, byName(this.options.table.rates))));
    this.options.requestReports();
  }

  /** Merged figures since the previous call (the `stats` log line's window); starts a new window. */
  takeLogWindow(): Record<LatencyName, Summary> {
    const out = {} as Record<LatencyName, Summary>;
    LATENCIES.forEach((name, kind) => {
      out[name] = this.logWindow[kind]!.summary();
      this.logWindow[kind]!.clear();
    });
    return out;
  }

  /** Errors counted and frames received since the previous interval, over all shards. */
  private intervalErrors(table: ShardTable): { errors: number; framesIn: number } {
    const totals = table.totals();
    let errors = 0;
    for (const slot of new Set(Object.values(errorCounter))) errors += totals[slot]!;
    const frames = totals[Counter.frames_in]!;
    const out = { errors: errors - this.previousErrors, framesIn: frames - this.previousFrames };
    this.previousErrors = errors;
    this.previousFrames = frames;
    return out;
  }
}

function inMs(s: Summary): { count: number; p95: number; p99: number } {
  return { count: s.count, p95: s.p95 / 1000, p99: s.p99 / 1000 };
}

/** The longest any shard's link has held records without draining, ms (what /health calls stuck past link_stuck_after). */
function longestLinkWait(table: ShardTable, now: number): number {
  let longest = 0;
  for (let shard = 0; shard < table.shards; shard++) {
    for (let link = 0; link < LINKS.length; link++) longest = Math.max(longest, table.linkState(shard, link, now).waiting_ms);
  }
  return longest;
}

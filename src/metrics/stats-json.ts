/**
 * The primary's additions to GET /stats and the /alerts document, as JSON text rendered once
 * per interval. Latencies are in milliseconds: merged over threads (`latency.<name>`) and each
 * thread's own (`latency.threads`), over the last interval and since start (for one thread:
 * since it started; a restarted shard starts again).
 */
import { encodeHistogram, type Histogram, type Summary } from './hdr.js';
import type { MetricsView } from './hub.js';
import { LATENCIES } from './latencies.js';
import { threadName } from './prometheus.js';
import type { ThreadReport } from './report.js';

const ms = (us: number): number => Math.round(us) / 1000;

/** A latency summary as /stats shows it (the load tester reads any p50/p95/p99 object as a latency). */
export function summaryJson(s: Summary): Record<string, number> {
  return { count: s.count, p50_ms: ms(s.p50), p90_ms: ms(s.p90), p95_ms: ms(s.p95), p99_ms: ms(s.p99), p999_ms: ms(s.p999), max_ms: ms(s.max), mean_ms: ms(s.mean) };
}

function threadLatency(t: ThreadReport): Record<string, unknown> {
  const out: Record<string, unknown> = { thread: threadName(t.thread), started_at: new Date(t.startedAt).toISOString() };
  LATENCIES.forEach((name, kind) => (out[name] = { last_interval: summaryJson(t.interval[kind]!), since_start: summaryJson(t.total[kind]!) }));
  return out;
}

export function renderStatsJson(view: MetricsView): string {
  const latency: Record<string, unknown> = { unit: 'ms', interval_s: view.intervalS };
  for (const l of view.latency) latency[l.name] = { last_interval: summaryJson(l.interval), since_start: summaryJson(l.total) };
  latency.threads = view.threads.map(threadLatency);
  const r = view.resources;
  return JSON.stringify({
    metrics_at: new Date(view.at).toISOString(),
    latency,
    connections_peak: view.peakConnections,
    queue: { ...view.depth, pending: view.depth.stored - view.depth.inflight },
    history: view.history,
    store_disk:
      view.disk === null
        ? null
        : { file_bytes: view.disk.fileBytes, reserved_bytes: view.disk.reservedBytes, fs_size_bytes: view.disk.fsBytes, fs_free_bytes: view.disk.fsFreeBytes, fs_used_ratio: round(view.disk.fsUsedRatio) },
    resources: {
      cpu_ratio: round(r.cpuRatio),
      cpu_seconds: round(r.cpuSeconds),
      cpu_limit: r.cpuLimit,
      rss_bytes: r.rssBytes,
      memory_limit_bytes: r.memoryLimitBytes,
      memory_ratio: round(r.memoryRatio),
      threads: view.threads.map((t) => ({
        thread: threadName(t.thread),
        heap_used_bytes: t.heapUsed,
        heap_total_bytes: t.heapTotal,
        heap_limit_bytes: t.heapLimit,
        event_loop_utilization: round(t.utilization),
        ...(t.cpuSeconds >= 0 ? { cpu_seconds: round(t.cpuSeconds), cpu_ratio: round(t.cpuRatio) } : {}),
      })),
    },
    rings: view.rings.map((ring) => ({ shard: ring.shard, to_shards_fill: round(ring.toShards), to_broker_fill: round(ring.toBroker), from_broker_fill: round(ring.fromBroker) })),
    alerts: { active: view.alerts.active },
  });
}

export function renderAlertsJson(view: MetricsView): string {
  return JSON.stringify({
    at: new Date(view.at).toISOString(),
    active: view.alerts.active,
    recent: view.alerts.recent,
    thresholds: Object.fromEntries(view.alerts.statuses.map((a) => [a.alert, a.threshold])),
  });
}

/**
 * GET /stats/histograms: each latency's merged since-start HDR histogram (µs, compressed base64
 * as HdrHistogram logs hold them; '' while empty). A reader that takes two of them can subtract
 * the first from the second for the exact percentiles of the time between (the load tester
 * does, for its measured window); `started_at` changes when the server restarts.
 */
export function renderHistogramsJson(view: MetricsView): string {
  return JSON.stringify({
    metrics_at: new Date(view.at).toISOString(),
    started_at: new Date(view.startedAt).toISOString(),
    interval_s: view.intervalS,
    unit: 'us',
    histograms: Object.fromEntries(view.latency.map((l) => [l.name, encodedTotal(l.histogram)])),
  });
}

/** Each since-start histogram's encoding at its count: they only grow, so one with no new samples is not encoded again. */
const encodedAt = new WeakMap<Histogram, { count: number; text: string }>();

function encodedTotal(h: Histogram): string {
  const cached = encodedAt.get(h);
  if (cached !== undefined && cached.count === h.totalCount) return cached.text;
  const text = encodeHistogram(h);
  encodedAt.set(h, { count: h.totalCount, text });
  return text;
}

function round(value: number): number {
  return Math.round(value * 10_000) / 10_000;
}

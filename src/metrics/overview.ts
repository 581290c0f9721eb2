/**
 * The overview: one flat row per interval with the merged P50/P95/P99 of every latency (last
 * interval and since start), the throughput, the connections and the active alerts. The same
 * row is what `npm run report` prints (as a table, JSON or CSV) from a server's /stats, and
 * what the server itself appends to monitoring.export_file; both build it here, from the
 * /stats shape (the script gets it over HTTP, the primary from the view it just rendered).
 */
import type { ActiveAlert } from './alerts.js';
import type { MetricsView } from './hub.js';
import { LATENCIES } from './latencies.js';
import { summaryJson } from './stats-json.js';

/** The throughput columns: /stats `rates_per_s` counters, shown per second. */
export const RATES = ['frames_in', 'pubs', 'deliveries', 'bytes_in', 'bytes_out'] as const;
export const PERCENTILES = ['p50', 'p95', 'p99'] as const;
export const WINDOWS = [
  ['last_interval', ''],
  ['since_start', 'since_start_'],
] as const;

/** The parts of /stats the overview reads (as the server serves them; any may be missing). */
export interface OverviewInputs {
  metrics_at?: string;
  connections?: number;
  connections_peak?: number;
  rates_per_s?: Record<string, number> | null;
  latency?: Record<string, unknown>;
  alerts?: { active?: ActiveAlert[] };
}

export type OverviewRow = Record<string, string | number | ActiveAlert[]> & { at: string; alerts: ActiveAlert[] };

/** The row's keys in order (CSV columns). */
export function overviewColumns(): string[] {
  const columns = ['at', 'connections', 'connections_peak', ...RATES.map((r) => `${r}_per_s`)];
  for (const [, prefix] of WINDOWS) {
    for (const name of LATENCIES) columns.push(...PERCENTILES.map((p) => `${name}_${prefix}${p}_ms`), `${name}_${prefix}count`);
  }
  columns.push('alerts');
  return columns;
}

export function overviewRow(stats: OverviewInputs, now = Date.now()): OverviewRow {
  // Keys in overviewColumns() order: alerts last.
  const row = { at: stats.metrics_at ?? new Date(now).toISOString() } as OverviewRow;
  row.connections = num(stats.connections);
  row.connections_peak = num(stats.connections_peak);
  for (const rate of RATES) row[`${rate}_per_s`] = Math.round(num(stats.rates_per_s?.[rate]) * 10) / 10;
  for (const [window, prefix] of WINDOWS) {
    for (const name of LATENCIES) {
      const figures = (stats.latency?.[name] as Record<string, Record<string, number> | undefined> | undefined)?.[window];
      for (const p of PERCENTILES) row[`${name}_${prefix}${p}_ms`] = num(figures?.[`${p}_ms`]);
      row[`${name}_${prefix}count`] = num(figures?.count);
    }
  }
  row.alerts = Array.isArray(stats.alerts?.active) ? stats.alerts.active : [];
  return row;
}

/** The same row, from what the primary has just rendered (for the export file). */
export function overviewFromView(view: MetricsView, rates: Record<string, number>): OverviewRow {
  const latency: Record<string, unknown> = {};
  for (const l of view.latency) latency[l.name] = { last_interval: summaryJson(l.interval), since_start: summaryJson(l.total) };
  return overviewRow({
    metrics_at: new Date(view.at).toISOString(),
    connections: view.connections,
    connections_peak: view.peakConnections,
    rates_per_s: rates,
    latency,
    alerts: { active: view.alerts.active },
  });
}

function num(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}

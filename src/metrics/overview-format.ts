/**
 * The overview row as people and programs read it: a terminal table, a JSON line, a CSV line
 * (with its header). `npm run report` prints any of them; the export file holds JSON lines.
 */
import type { ActiveAlert, AlertEvent } from './alerts.js';
import { LATENCIES } from './latencies.js';
import { overviewColumns, PERCENTILES, WINDOWS, type OverviewRow } from './overview.js';

export type OverviewFormat = 'table' | 'json' | 'csv';
export const FORMATS: readonly OverviewFormat[] = ['table', 'json', 'csv'];

export function jsonLine(row: OverviewRow): string {
  return JSON.stringify(row);
}

export function csvHeader(): string {
  return overviewColumns().join(',');
}

export function csvLine(row: OverviewRow): string {
  return overviewColumns()
    .map((column) => (column === 'alerts' ? csvField(row.alerts.map(alertText).join('; ')) : csvField(String(row[column] ?? ''))))
    .join(',');
}

function csvField(text: string): string {
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function alertText(a: ActiveAlert): string {
  return `${a.alert}=${a.value}${a.unit === '%' ? '%' : ` ${a.unit}`} (threshold ${a.threshold})`;
}

export interface TableContext {
  /** Where the figures came from (the server's URL, or the export file). */
  source: string;
  intervalS?: number;
  /** The last raised/cleared events (/alerts `recent`), newest shown last. */
  recent?: readonly AlertEvent[];
}

const RECENT_SHOWN = 5;

/** The row as a table of plain lines (no colour: it reads the same in a pipe, a file and a terminal). */
export function formatTable(row: OverviewRow, context: TableContext): string[] {
  const n = (value: unknown): string => (typeof value === 'number' ? value.toLocaleString('en-US', { maximumFractionDigits: 3 }) : String(value));
  const rate = (name: string): string => n(row[`${name}_per_s`]);
  const lines = [
    `ocs-realtime  ${context.source}  at ${row.at}${context.intervalS ? `  (every ${context.intervalS} s)` : ''}`,
    `connections   ${n(row.connections)}   (peak ${n(row.connections_peak)})`,
    `throughput    frames in ${rate('frames_in')}/s   pubs ${rate('pubs')}/s   deliveries ${rate('deliveries')}/s   bytes in ${bytes(row.bytes_in_per_s)}/s   out ${bytes(row.bytes_out_per_s)}/s`,
    '',
  ];
  const cells: string[][] = [['latency (ms)', ...WINDOWS.flatMap(() => [...PERCENTILES.map((p) => p.toUpperCase()), 'count'])]];
  for (const name of LATENCIES) {
    cells.push([name, ...WINDOWS.flatMap(([, prefix]) => [...PERCENTILES.map((p) => n(row[`${name}_${prefix}${p}_ms`])), n(row[`${name}_${prefix}count`])])]);
  }
  const widths = cells[0]!.map((_, c) => Math.max(...cells.map((r) => r[c]!.length)));
  // The window names over their four columns each.
  const span = PERCENTILES.length + 1;
  const titles = WINDOWS.map(([window], w) => {
    const width = widths.slice(1 + w * span, 1 + (w + 1) * span).reduce((sum, x) => sum + x + 2, -2);
    return window.replace('_', ' ').padStart(width);
  });
  lines.push(`${' '.repeat(widths[0]!)}  ${titles.join('  ')}`);
  lines.push(...cells.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ').trimEnd()), '');
  if (row.alerts.length === 0) lines.push('alerts        none active');
  else lines.push(`alerts        ${row.alerts.length} active`, ...row.alerts.map((a) => `  ! ${alertText(a)} since ${a.since}`));
  const recent = (context.recent ?? []).slice(-RECENT_SHOWN);
  if (recent.length > 0) lines.push('recent', ...recent.map((e) => `  ${e.at}  ${e.state.padEnd(7)} ${e.alert}=${e.value} (threshold ${e.threshold} ${e.unit})`));
  return lines;
}

function bytes(value: unknown): string {
  const v = typeof value === 'number' ? value : 0;
  const units = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  let scaled = v;
  while (scaled >= 1000 && i < units.length - 1) {
    scaled /= 1000;
    i++;
  }
  return `${Math.round(scaled * 10) / 10} ${units[i]}`;
}

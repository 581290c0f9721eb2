/** Small number formatting, and phrases, shared by the reports. */
import type { ScenarioReport } from './report-types.js';

export const fmtMs = (ms: number): string => (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2));
export const fmtPct = (x: number): string => `${(x * 100).toFixed(x > 0 && x < 0.001 ? 3 : 2)}%`;
export const fmtRate = (x: number): string => (x >= 10_000 ? `${(x / 1000).toFixed(1)}k` : x >= 100 ? x.toFixed(0) : x.toFixed(1));
export function fmtBytes(b: number | null): string {
  if (b === null) return 'n/a';
  if (b >= 1 << 30) return `${(b / (1 << 30)).toFixed(2)} GiB`;
  if (b >= 1 << 20) return `${(b / (1 << 20)).toFixed(1)} MiB`;
  if (b >= 1 << 10) return `${(b / (1 << 10)).toFixed(1)} KiB`;
  return `${b} B`;
}

/** A plain text table: columns padded to their widest cell, numbers right-aligned. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const numeric = header.map((_, i) => rows.every((r) => /^[-+]?[\d.,]+[%a-zA-Z/ ]*$|^n\/a$|^-$/.test(r[i] ?? '')));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '─'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** The total, and when there are any, what explains them. */
export function duplicatesText(d: ScenarioReport['delivery']): string {
  if (d.duplicates === 0) return '0';
  const k = d.duplicateKinds;
  return `${d.duplicates} (same connection ${k.sameConnection}: a server defect; old and new connection of a reconnecting user ${k.reconnectOverlap}: expected; send redelivered ${k.sendRedelivered}: at-least-once, expected)`;
}

export function pacingText(g: ScenarioReport['generator']): string {
  const priorities = [...new Set(g.priority)];
  const priority = priorities.length === 0 ? '' : `${priorities.join(' / ')}, `;
  return `${priority}blocked ${g.pacing.blockedPercent.toFixed(1)}% / spun ${g.pacing.spinPercent.toFixed(1)}% of the threads' time`;
}

/** The reconnect scenario's line: drops, recoveries, and whether every user got each message once, in order. */
export function recoveryText(r: NonNullable<ScenarioReport['recovery']>): string {
  return (
    `recovery: ${r.drops} dropped, ${r.rejoins} rejoined with since (${r.recovered} recovered, ${r.notRecovered} not), ${r.replayed} messages replayed; ` +
    `order check: ${r.inOrder} in order, ${r.gaps} skipped, ${r.duplicates} repeated, ${r.mismatches} mismatched, ${r.epochChanges} epoch changes — ` +
    (r.exactlyOnce ? 'exactly once, in order' : 'VIOLATED')
  );
}

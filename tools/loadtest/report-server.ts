/**
 * The rows that put the server's own latency over the measured window beside the load tester's
 * end-to-end figures, for the terminal and the HTML report alike. Each server latency sits under
 * the end-to-end figure it is part of: the server's is a lower bound (it leaves out the network,
 * the client's own work and the generator's lag).
 */
import type { LatencySummary } from '../lib/histogram.js';
import type { ScenarioReport } from './report-types.js';
import type { WindowLatency } from './server-window.js';

export interface LatencyRow {
  label: string;
  /** Whose figure it is: the load tester's end to end, or the server's own. */
  side: 'load tester' | 'server';
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  p999Ms: number;
  count: number;
}

/** What each server latency measures, for the row label (src/metrics/latencies.ts). */
const SERVER_ROWS: ReadonlyArray<[string, string]> = [
  ['pub', 'pub: frame in → handed to uWS, each shard'],
  ['send', 'send: frame in → handed to uWS'],
  ['commit', 'send: frame in → store commit (sender ack)'],
  ['ack', 'ack: delivered → ack in'],
  ['ping', "ping: the server's WebSocket ping RTT"],
  ['event_loop', 'event-loop delay, every thread'],
];

/** End-to-end rows, each followed by the server's part of it; then the server's own other figures. */
export function sideBySideRows(s: ScenarioReport): LatencyRow[] {
  const mine = (label: string, l: LatencySummary): LatencyRow => ({ label, side: 'load tester', p50Ms: l.p50Ms, p95Ms: l.p95Ms, p99Ms: l.p99Ms, p999Ms: l.p999Ms, count: l.count });
  const window = s.server.window;
  const theirs = (name: string): LatencyRow[] => {
    const l: WindowLatency | undefined = window?.available ? window.latencies[name] : undefined;
    const label = SERVER_ROWS.find(([n]) => n === name)![1];
    return l ? [{ label, side: 'server', ...l }] : [];
  };
  return [
    mine('pub fan-out (corrected)', s.latency.fanout),
    ...theirs('pub'),
    ...(s.latency.send.count > 0 ? [mine('send → delivery (corrected)', s.latency.send)] : []),
    ...theirs('send'),
    ...theirs('commit'),
    ...theirs('ack'),
    ...theirs('ping'),
    ...theirs('event_loop'),
  ];
}

/** The sentence under the rows: how the server's window was read, or why it is missing. */
export function windowNote(s: ScenarioReport): string {
  const w = s.server.window;
  if (!w?.available) return `server's own latency over the window: not available (${w?.reason ?? 'not in this report'})`;
  return `server's window ${w.from} → ${w.to}: ${w.method}; merged over its threads, a lower bound of the end-to-end figures`;
}

/** `--compare A.json B.json`: what changed from run A to run B, scenario by scenario. */
import { fmtMs, fmtPct, fmtRate, table } from './format.js';
import type { RunReport, ScenarioReport } from './report-types.js';

interface Metric {
  name: string;
  get: (s: ScenarioReport) => number;
  fmt: (v: number) => string;
  /** true: a larger value is worse */
  lowerIsBetter: boolean;
}

const GRADE_POINTS: Record<string, number> = { 'A+': 5, A: 4, B: 3, C: 2, D: 1, F: 0 };

export const COMPARED_METRICS: Metric[] = [
  { name: 'fan-out P50 ms', get: (s) => s.latency.fanout.p50Ms, fmt: fmtMs, lowerIsBetter: true },
  { name: 'fan-out P95 ms', get: (s) => s.latency.fanout.p95Ms, fmt: fmtMs, lowerIsBetter: true },
  { name: 'fan-out P99 ms', get: (s) => s.latency.fanout.p99Ms, fmt: fmtMs, lowerIsBetter: true },
  { name: 'fan-out max ms', get: (s) => s.latency.fanout.maxMs, fmt: fmtMs, lowerIsBetter: true },
  { name: 'send P99 ms', get: (s) => s.latency.send.p99Ms, fmt: fmtMs, lowerIsBetter: true },
  { name: 'ping P99 ms', get: (s) => s.latency.ping.p99Ms, fmt: fmtMs, lowerIsBetter: true },
  { name: 'connect P99 ms', get: (s) => s.latency.connect.p99Ms, fmt: fmtMs, lowerIsBetter: true },
  { name: 'generator lag P99 ms', get: (s) => s.latency.scheduleLag.p99Ms, fmt: fmtMs, lowerIsBetter: true },
  { name: 'delivered/s', get: (s) => s.throughput.totalDeliveredPerS, fmt: fmtRate, lowerIsBetter: false },
  { name: 'connect success', get: (s) => s.connections.successRate, fmt: fmtPct, lowerIsBetter: false },
  { name: 'error rate', get: (s) => s.errors.rate, fmt: fmtPct, lowerIsBetter: true },
  { name: 'loss rate', get: (s) => s.delivery.pubLossRate, fmt: fmtPct, lowerIsBetter: true },
  { name: 'server peak RSS MiB', get: (s) => (s.server.rssPeakBytes ?? Number.NaN) / (1 << 20), fmt: (v) => v.toFixed(1), lowerIsBetter: true },
  { name: 'grade points', get: (s) => GRADE_POINTS[s.grade.grade] ?? 0, fmt: (v) => String(v), lowerIsBetter: false },
];

/** A change under this fraction (or under 0.05 ms for latencies) is "same". */
const NOISE = 0.05;

export interface MetricDiff {
  scenario: string;
  metric: string;
  a: number;
  b: number;
  change: number;
  verdict: 'better' | 'worse' | 'same';
}

export function diffReports(a: RunReport, b: RunReport): { diffs: MetricDiff[]; onlyInA: string[]; onlyInB: string[] } {
  const diffs: MetricDiff[] = [];
  const byName = new Map(b.scenarios.map((s) => [s.name, s]));
  for (const sa of a.scenarios) {
    const sb = byName.get(sa.name);
    if (!sb) continue;
    for (const m of COMPARED_METRICS) {
      const va = m.get(sa);
      const vb = m.get(sb);
      if (Number.isNaN(va) || Number.isNaN(vb)) continue;
      const change = va === 0 ? (vb === 0 ? 0 : Number.POSITIVE_INFINITY) : (vb - va) / Math.abs(va);
      const tiny = m.name.endsWith('ms') && Math.abs(vb - va) < 0.05;
      const verdict = tiny || Math.abs(change) < NOISE ? 'same' : (vb > va) === m.lowerIsBetter ? 'worse' : 'better';
      diffs.push({ scenario: sa.name, metric: m.name, a: va, b: vb, change, verdict });
    }
  }
  const namesA = new Set(a.scenarios.map((s) => s.name));
  return {
    diffs,
    onlyInA: a.scenarios.filter((s) => !byName.has(s.name)).map((s) => s.name),
    onlyInB: b.scenarios.filter((s) => !namesA.has(s.name)).map((s) => s.name),
  };
}

export function renderCompare(a: RunReport, b: RunReport, fileA: string, fileB: string): string {
  const { diffs, onlyInA, onlyInB } = diffReports(a, b);
  const fmtOf = new Map(COMPARED_METRICS.map((m) => [m.name, m.fmt]));
  const out = [`A: ${fileA} (${a.startedAt}, overall ${a.overall.grade})`, `B: ${fileB} (${b.startedAt}, overall ${b.overall.grade})`, ''];
  out.push(
    table(
      ['scenario', 'metric', 'A', 'B', 'change', ''],
      diffs.map((d) => {
        const f = fmtOf.get(d.metric)!;
        const change = Number.isFinite(d.change) ? `${d.change >= 0 ? '+' : ''}${(d.change * 100).toFixed(1)}%` : 'new';
        return [d.scenario, d.metric, f(d.a), f(d.b), change, d.verdict === 'same' ? '' : d.verdict === 'worse' ? 'WORSE' : 'better'];
      }),
    ),
  );
  if (onlyInA.length) out.push(`only in A: ${onlyInA.join(', ')}`);
  if (onlyInB.length) out.push(`only in B: ${onlyInB.join(', ')}`);
  const worse = diffs.filter((d) => d.verdict === 'worse').length;
  const better = diffs.filter((d) => d.verdict === 'better').length;
  out.push('', `${worse} figure(s) worse, ${better} better (changes under ${NOISE * 100}% count as the same)`);
  return out.join('\n');
}

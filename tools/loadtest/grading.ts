/**
 * Grades, from one table. Row A is the seed's targets (P95 < 100 ms, P99 < 200 ms,
 * errors < 1%, 1,000+ msg/s); the other rows are set so that the seed's own published
 * results grade as it said (baseline 45 ms / 0.1% → A+, extreme 140 ms / 1.2% → B).
 *
 * A scenario's grade is the best row whose every limit it meets, i.e. the worst grade over
 * its criteria; each criterion that keeps it below A+ is named in `reasons`. Latency is the
 * coordinated-omission-corrected pub fan-out latency (the ping round trip when the scenario
 * publishes nothing). Throughput is judged against what the scenario offered, since a
 * 100-connection scenario cannot deliver 1,000 msg/s by design; and a scenario that offers
 * at least 1,000 deliveries/s must also deliver 1,000/s to get an A.
 *
 * The overall grade is the mean of the scenario grades' points (A+ 5 … F 0), rounded down.
 */
export const GRADES = ['A+', 'A', 'B', 'C', 'D', 'F'] as const;
export type Grade = (typeof GRADES)[number];

export interface GradeRow {
  grade: Exclude<Grade, 'F'>;
  /** upper limits, inclusive */
  p95Ms: number;
  p99Ms: number;
  errorRate: number;
  lossRate: number;
  /** lower limit: delivered / offered */
  throughputRatio: number;
}

export const GRADE_TABLE: readonly GradeRow[] = [
  { grade: 'A+', p95Ms: 50, p99Ms: 100, errorRate: 0.001, lossRate: 0.0001, throughputRatio: 0.99 },
  { grade: 'A', p95Ms: 100, p99Ms: 200, errorRate: 0.01, lossRate: 0.001, throughputRatio: 0.95 },
  { grade: 'B', p95Ms: 200, p99Ms: 400, errorRate: 0.02, lossRate: 0.01, throughputRatio: 0.9 },
  { grade: 'C', p95Ms: 500, p99Ms: 1000, errorRate: 0.05, lossRate: 0.02, throughputRatio: 0.75 },
  { grade: 'D', p95Ms: 1000, p99Ms: 2000, errorRate: 0.1, lossRate: 0.05, throughputRatio: 0.5 },
];

/** The seed's absolute throughput target, applied to scenarios that offer at least that much. */
export const THROUGHPUT_TARGET_PER_S = 1000;

export interface GradeInput {
  p95Ms: number;
  p99Ms: number;
  errorRate: number;
  lossRate: number;
  /** deliveries per second achieved and offered */
  deliveredPerS: number;
  offeredPerS: number;
}

export interface GradeResult {
  grade: Grade;
  points: number;
  /** Why the grade is below A+, one line per criterion that kept it down. */
  reasons: string[];
}

const points = (g: Grade): number => 5 - GRADES.indexOf(g);
const pct = (x: number): string => `${(x * 100).toFixed(x < 0.001 && x > 0 ? 3 : 2)}%`;

function gradeOf(ok: (row: GradeRow) => boolean): Grade {
  return GRADE_TABLE.find(ok)?.grade ?? 'F';
}

export function gradeScenario(x: GradeInput): GradeResult {
  const ratio = x.offeredPerS > 0 ? x.deliveredPerS / x.offeredPerS : 1;
  const needsTarget = x.offeredPerS >= THROUGHPUT_TARGET_PER_S;
  const throughputOk = (r: GradeRow): boolean =>
    ratio >= r.throughputRatio && !(needsTarget && (r.grade === 'A+' || r.grade === 'A') && x.deliveredPerS < THROUGHPUT_TARGET_PER_S);
  const criteria: Array<{ ok: (r: GradeRow) => boolean; got: string; needs: (r: GradeRow) => string }> = [
    { ok: (r) => x.p95Ms <= r.p95Ms, got: `P95 ${x.p95Ms.toFixed(1)} ms`, needs: (r) => `≤ ${r.p95Ms} ms` },
    { ok: (r) => x.p99Ms <= r.p99Ms, got: `P99 ${x.p99Ms.toFixed(1)} ms`, needs: (r) => `≤ ${r.p99Ms} ms` },
    { ok: (r) => x.errorRate <= r.errorRate, got: `error rate ${pct(x.errorRate)}`, needs: (r) => `≤ ${pct(r.errorRate)}` },
    { ok: (r) => x.lossRate <= r.lossRate, got: `loss rate ${pct(x.lossRate)}`, needs: (r) => `≤ ${pct(r.lossRate)}` },
    {
      ok: throughputOk,
      got: `throughput ${x.deliveredPerS.toFixed(0)}/s of ${x.offeredPerS.toFixed(0)}/s offered (${pct(ratio)})`,
      needs: (r) => `≥ ${pct(r.throughputRatio)} of offered${needsTarget && (r.grade === 'A+' || r.grade === 'A') ? ` and ≥ ${THROUGHPUT_TARGET_PER_S}/s` : ''}`,
    },
  ];
  let worst: Grade = 'A+';
  const reasons: string[] = [];
  for (const c of criteria) {
    const g = gradeOf(c.ok);
    if (points(g) < points(worst)) worst = g;
    if (g !== 'A+') {
      const better = GRADE_TABLE[GRADES.indexOf(g) - 1]!;
      reasons.push(`${c.got} → ${g} (${better.grade} needs ${c.needs(better)})`);
    }
  }
  return { grade: worst, points: points(worst), reasons };
}

export function overallGrade(scenarioGrades: Grade[]): GradeResult {
  if (scenarioGrades.length === 0) return { grade: 'F', points: 0, reasons: ['no scenario ran'] };
  const mean = scenarioGrades.reduce((s, g) => s + points(g), 0) / scenarioGrades.length;
  const p = Math.floor(mean + 1e-9);
  const grade = GRADES[5 - p]!;
  return { grade, points: p, reasons: [] };
}

/** The table as Markdown (docs/loadtest.md and --help print it from here). */
export function gradeTableMarkdown(): string {
  const lines = ['| grade | P95 ≤ | P99 ≤ | error rate ≤ | loss rate ≤ | delivered/offered ≥ |', '|---|---|---|---|---|---|'];
  for (const r of GRADE_TABLE) {
    lines.push(`| ${r.grade} | ${r.p95Ms} ms | ${r.p99Ms} ms | ${pct(r.errorRate)} | ${pct(r.lossRate)} | ${pct(r.throughputRatio)} |`);
  }
  lines.push('| F | anything worse | | | | |');
  return lines.join('\n');
}

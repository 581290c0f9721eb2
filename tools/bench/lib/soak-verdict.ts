// What the soak benchmark's samples say: per series (RSS and its parts, each thread's heap as
// /stats reports it, its live heap and external memory after a full collection), the
// least-squares slope over the second half of the churn, the last quarter of the churn against
// its first quarter after the warm-up, and the end state (every client gone, the server idle)
// against that first quarter and against the idle server before the churn; then whether that
// is a leak.
import type { ThreadHeap } from './inspector-heap.js';

export const MIB = 1024 * 1024;
export const mib = (bytes: number): number => Math.round((bytes / MIB) * 100) / 100;

export interface ThreadFigure {
  thread: string;
  heapUsedBytes: number;
  heapTotalBytes: number;
}

export interface Sample {
  /** Seconds since the churn started (negative: before it). */
  t: number;
  phase: 'before' | 'churn' | 'after';
  rssBytes: number;
  rssAnonBytes: number;
  rssFileBytes: number;
  /** /stats resources.threads, garbage included. */
  statsHeaps: ThreadFigure[];
  /** After a full collection in each thread (--heap gc). */
  liveHeaps: ThreadHeap[] | null;
  connections: number;
  stored: number;
  storedBytes: number;
  queue: unknown;
  history: unknown;
  deadLettered: number;
  expired: number;
  clients: { live: number; opened: number };
}

interface Series {
  name: string;
  /** Every sample's value (null where absent). */
  points: Array<{ t: number; phase: Sample['phase']; v: number | null }>;
}

function seriesOf(samples: readonly Sample[]): Series[] {
  const out: Series[] = [];
  const at = (get: (s: Sample) => number | null | undefined) => samples.map((s) => ({ t: s.t, phase: s.phase, v: get(s) ?? null }));
  out.push({ name: 'rss', points: at((s) => s.rssBytes) });
  out.push({ name: 'rss_anon', points: at((s) => s.rssAnonBytes) });
  // file-backed: mostly LMDB's map (the store's pages as they are read and written: page cache, not the process's own)
  out.push({ name: 'rss_file', points: at((s) => s.rssFileBytes) });
  const threads = new Set(samples.flatMap((s) => s.statsHeaps.map((h) => h.thread)));
  for (const th of threads) out.push({ name: `stats_heap_used:${th}`, points: at((s) => s.statsHeaps.find((h) => h.thread === th)?.heapUsedBytes) });
  const liveThreads = new Set(samples.flatMap((s) => (s.liveHeaps ?? []).map((h) => h.thread)));
  for (const th of liveThreads) out.push({ name: `live_heap:${th}`, points: at((s) => s.liveHeaps?.find((h) => h.thread === th)?.usedBytes) });
  for (const th of liveThreads) out.push({ name: `external:${th}`, points: at((s) => s.liveHeaps?.find((h) => h.thread === th)?.externalBytes) });
  return out;
}

function slopePerMinute(points: Array<{ t: number; v: number }>): number | null {
  if (points.length < 3) return null;
  const n = points.length;
  const mt = points.reduce((a, p) => a + p.t, 0) / n;
  const mv = points.reduce((a, p) => a + p.v, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.t - mt) * (p.v - mv);
    den += (p.t - mt) ** 2;
  }
  return den === 0 ? null : (num / den) * 60;
}

const mean = (values: number[]): number | null => (values.length === 0 ? null : values.reduce((a, b) => a + b, 0) / values.length);

export interface SeriesVerdict {
  series: string;
  beforeMiB: number | null;
  firstQuarterMiB: number | null;
  lastQuarterMiB: number | null;
  endMiB: number | null;
  maxMiB: number | null;
  secondHalfSlopeBytesPerMin: number | null;
  lastOverFirstQuarter: number | null;
  endOverFirstQuarter: number | null;
  endMinusBeforeMiB: number | null;
}

export interface JudgedVerdict extends SeriesVerdict {
  judged: string;
}

/** `churnS`: seconds the churn lasted; `warmupS`: seconds of it before the first quarter (at most half of it). */
function verdictOf(series: Series, churnS: number, warmupS: number): SeriesVerdict {
  const pts = series.points.filter((p): p is { t: number; phase: Sample['phase']; v: number } => p.v !== null && Number.isFinite(p.v));
  const before = pts.filter((p) => p.phase === 'before').at(-1)?.v ?? null;
  const churn = pts.filter((p) => p.phase === 'churn');
  const end = pts.filter((p) => p.phase === 'after').at(-1)?.v ?? null;
  const warm = Math.min(warmupS, churnS / 2);
  const measured = churn.filter((p) => p.t >= warm);
  const span = churnS - warm;
  const q1 = mean(measured.filter((p) => p.t < warm + span / 4).map((p) => p.v));
  const q4 = mean(measured.filter((p) => p.t >= warm + (3 * span) / 4).map((p) => p.v));
  const slope = slopePerMinute(churn.filter((p) => p.t >= churnS / 2));
  const r = (x: number | null): number | null => (x === null ? null : Math.round(x * 1000) / 1000);
  return {
    series: series.name,
    beforeMiB: before === null ? null : mib(before),
    firstQuarterMiB: q1 === null ? null : mib(q1),
    lastQuarterMiB: q4 === null ? null : mib(q4),
    endMiB: end === null ? null : mib(end),
    maxMiB: churn.length ? mib(Math.max(...churn.map((p) => p.v))) : null,
    secondHalfSlopeBytesPerMin: slope === null ? null : Math.round(slope),
    lastOverFirstQuarter: q1 && q4 ? r(q4 / q1) : null,
    endOverFirstQuarter: q1 && end !== null ? r(end / q1) : null,
    endMinusBeforeMiB: before !== null && end !== null ? mib(end - before) : null,
  };
}

/** A leak, by one series: still growing at the end of the churn, or holding at the end much more than the churned server held early on. */
function judge(v: SeriesVerdict): string {
  const slopeMiB = (v.secondHalfSlopeBytesPerMin ?? 0) / MIB;
  const growing = slopeMiB > 0.5 && (v.lastOverFirstQuarter ?? 1) > 1.1;
  const kept = (v.endOverFirstQuarter ?? 0) > 1.25 && (v.endMiB ?? 0) - (v.firstQuarterMiB ?? 0) > 5;
  return growing && kept ? 'GROWS, and stays after the clients left' : growing ? 'grows during the churn' : kept ? 'kept after the clients left' : 'bounded';
}

/** Every series of the samples, judged. */
export function verdictsOf(samples: readonly Sample[], churnS: number, warmupS: number): JudgedVerdict[] {
  return seriesOf(samples).map((s) => {
    const v = verdictOf(s, churnS, warmupS);
    const judged = judge(v);
    // The store's pages, mapped: they grow with data.mdb (the dead letters of users who never came back, up to store.max_dead_letters) and are page cache the kernel takes back, not the process's own memory.
    return { ...v, judged: s.name === 'rss_file' && judged !== 'bounded' ? `${judged} (LMDB's mapped file: page cache, grows with data.mdb)` : judged };
  });
}

/** Judged on the live heaps (after a full collection) and anonymous RSS: /stats heaps hold garbage, file-backed RSS is LMDB's page cache. */
export const leakIn = (verdicts: readonly JudgedVerdict[]): boolean => verdicts.some((v) => /GROWS|kept/.test(v.judged) && /^(live_heap|rss_anon|external)/.test(String(v.series)));

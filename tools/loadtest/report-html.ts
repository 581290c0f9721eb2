/**
 * A self-contained HTML page: per scenario, the summary, the latency percentile
 * distribution (HdrHistogram's plot: x is 1/(1-percentile) on a log axis, so the tail gets
 * the room; latency on a log axis too, so one slow outlier does not flatten every other
 * curve) and latency over time. SVG drawn by hand: no scripts, no dependencies.
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { duplicatesText, fmtBytes, fmtMs, fmtPct, fmtRate, pacingText, recoveryText } from './format.js';
import { gradeTableMarkdown } from './grading.js';
import type { RunReport, ScenarioReport } from './report-types.js';
import { sideBySideRows, windowNote } from './report-server.js';

const W = 640;
const H = 300;
const M = { l: 56, r: 16, t: 16, b: 44 };
const LEGEND_ROW = 16;
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#7f7f7f'];
/** The log latency axis starts no lower than 1 µs, the histograms' resolution. */
const LOG_FLOOR_MS = 0.001;

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

interface Series {
  name: string;
  points: Array<[number, number]>;
  dashed?: boolean;
}

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

interface YAxis {
  /** screen y of a value */
  py: (v: number) => number;
  ticks: number[];
  label: (v: number) => string;
}

/** 0 .. a round maximum, six ticks. */
function linearAxis(values: number[]): YAxis {
  const yMax = niceMax(Math.max(...values) * 1.05);
  const ticks = [0, 1, 2, 3, 4, 5].map((i) => (yMax * i) / 5);
  return { py: (v) => H - M.b - (v / yMax) * (H - M.t - M.b), ticks, label: fmtMs };
}

/** Whole decades around the values, a tick per decade; values below the floor sit on it. */
export function logAxis(values: number[]): YAxis {
  const positive = values.filter((v) => v > 0);
  const lo = Math.floor(Math.log10(Math.max(LOG_FLOOR_MS, Math.min(...positive, 1))));
  const hi = Math.max(lo + 1, Math.ceil(Math.log10(Math.max(...positive, LOG_FLOOR_MS * 10))));
  const ticks: number[] = [];
  for (let e = lo; e <= hi; e++) ticks.push(10 ** e);
  const py = (v: number): number => H - M.b - ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * (H - M.t - M.b);
  // Decades print as they are (0.001 … 1000): fixed decimals would show 1 µs as 0.00.
  return { py, ticks, label: (v) => String(v) };
}

function svgChart(series: Series[], x: { min: number; max: number; ticks: Array<[number, string]>; label: string }, yLabel: string, yScale: 'linear' | 'log' = 'linear'): string {
  const all = series.flatMap((s) => s.points.map((p) => p[1]));
  if (all.length === 0) return '<p class="empty">no samples</p>';
  const { py, ticks, label } = yScale === 'log' ? logAxis(all) : linearAxis(all);
  const px = (v: number): number => M.l + ((v - x.min) / (x.max - x.min || 1)) * (W - M.l - M.r);
  // The legend goes under the plot, two entries a row, where it hides no curve.
  const height = H + Math.ceil(series.length / 2) * LEGEND_ROW + 4;
  const parts: string[] = [`<svg viewBox="0 0 ${W} ${height}" width="${W}" height="${height}" role="img">`];
  for (const v of ticks) {
    parts.push(`<line x1="${M.l}" x2="${W - M.r}" y1="${py(v)}" y2="${py(v)}" class="grid"/>`);
    parts.push(`<text x="${M.l - 6}" y="${py(v) + 4}" text-anchor="end">${esc(label(v))}</text>`);
  }
  for (const [v, label] of x.ticks) {
    parts.push(`<line x1="${px(v)}" x2="${px(v)}" y1="${M.t}" y2="${H - M.b}" class="grid"/>`);
    parts.push(`<text x="${px(v)}" y="${H - M.b + 16}" text-anchor="middle">${esc(label)}</text>`);
  }
  parts.push(`<text x="${(M.l + W - M.r) / 2}" y="${H - 6}" text-anchor="middle">${esc(x.label)}</text>`);
  parts.push(`<text x="14" y="${(M.t + H - M.b) / 2}" text-anchor="middle" transform="rotate(-90 14 ${(M.t + H - M.b) / 2})">${esc(yLabel)}</text>`);
  series.forEach((s, i) => {
    if (s.points.length === 0) return;
    const d = s.points.map((p, k) => `${k === 0 ? 'M' : 'L'}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join(' ');
    parts.push(`<path d="${d}" fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 4"' : ''}/>`);
    const lx = M.l + (i % 2) * ((W - M.l) / 2);
    const ly = H + 4 + Math.floor(i / 2) * LEGEND_ROW;
    parts.push(`<rect x="${lx}" y="${ly}" width="12" height="3" fill="${COLORS[i % COLORS.length]}"/>`);
    parts.push(`<text x="${lx + 18}" y="${ly + 5}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('');
}

/** x position of a percentile: log10(1/(1-p)); the 100th percentile (max) is drawn at 99.999%. */
const pctX = (p: number): number => Math.log10(1 / (1 - Math.min(p, 99.999) / 100));

export function percentilePlot(s: ScenarioReport): string {
  const c = s.percentileCurves;
  const curve = (pts: Array<[number, number]>): Array<[number, number]> => pts.map(([p, v]) => [pctX(p), v]);
  const series: Series[] = (
    [
    { name: 'pub fan-out (corrected)', points: curve(c.fanout) },
    { name: 'pub fan-out (uncorrected)', points: curve(c.fanoutUncorrected), dashed: true },
    { name: 'send → delivery', points: curve(c.send) },
    { name: 'ping round trip', points: curve(c.ping) },
    { name: 'connect', points: curve(c.connect) },
    { name: 'ping round trip (uncorrected)', points: curve(c.pingUncorrected ?? []), dashed: true },
    { name: 'generator schedule lag (sent − due)', points: curve(c.scheduleLag ?? []), dashed: true },
    ] as Series[]
  ).filter((x) => x.points.length > 0);
  const ticks: Array<[number, string]> = [
    [0, '0%'],
    [1, '90%'],
    [2, '99%'],
    [3, '99.9%'],
    [4, '99.99%'],
    [5, '99.999%'],
  ];
  return svgChart(series, { min: 0, max: 5, ticks, label: 'percentile' }, 'latency (ms, log scale)', 'log');
}

export function timePlot(s: ScenarioReport): string {
  const pts = s.timeSeries;
  if (pts.length === 0) return '<p class="empty">no samples</p>';
  const min = Math.min(0, ...pts.map((p) => p.t));
  const max = Math.max(...pts.map((p) => p.t), 1);
  const step = niceMax(max - min) / 5;
  const ticks: Array<[number, string]> = [];
  for (let t = Math.ceil(min / step) * step; t <= max; t += step) ticks.push([t, `${t.toFixed(0)} s`]);
  // The scale follows the measured window: warm-up values (connection set-up can take seconds)
  // are drawn clipped at its top instead of flattening every measured second to the axis.
  const measured = pts.filter((p) => p.t >= 0);
  const cap = Math.max(...(measured.length > 0 ? measured : pts).map((p) => p.maxMs), 0.001);
  const clip = (t: number, v: number): [number, number] => [t, t < 0 ? Math.min(v, cap) : v];
  return svgChart(
    [
      { name: 'P50', points: pts.map((p) => clip(p.t, p.p50Ms)) },
      { name: 'P99', points: pts.map((p) => clip(p.t, p.p99Ms)) },
      { name: 'max', points: pts.map((p) => clip(p.t, p.maxMs)), dashed: true },
    ],
    { min, max, ticks, label: 'seconds since the measurement started (negative: warm-up)' },
    'fan-out latency (ms)',
  );
}

function row(cells: string[], tag = 'td'): string {
  return `<tr>${cells.map((c) => `<${tag}>${c}</${tag}>`).join('')}</tr>`;
}

function scenarioSection(s: ScenarioReport): string {
  const l = s.latency;
  const lat = (name: string, v: typeof l.fanout): string => row([esc(name), fmtMs(v.p50Ms), fmtMs(v.p95Ms), fmtMs(v.p99Ms), fmtMs(v.p999Ms), fmtMs(v.maxMs), String(v.count)]);
  const sideBySide = `<table class="server-window"><tr><th>whose</th><th>latency (ms)</th><th>P50</th><th>P95</th><th>P99</th><th>P99.9</th><th>count</th></tr>${sideBySideRows(s)
    .map((r) => row([r.side, esc(r.label), fmtMs(r.p50Ms), fmtMs(r.p95Ms), fmtMs(r.p99Ms), fmtMs(r.p999Ms), String(r.count)]))
    .join('')}</table><p>${esc(windowNote(s))}</p>`;
  const fallback = s.server.window?.available
    ? ''
    : `<table><tr><th>server /stats</th><th>P50</th><th>P95</th><th>P99</th></tr>${s.server.stats.latencies.map((m) => row([esc(`${m.metric} (${m.unit})`), String(m.p50), String(m.p95), String(m.p99)])).join('')}</table>`;
  const server = s.server.stats.available
    ? `${sideBySide}${fallback}<p>${esc(Object.entries(s.server.stats.resources).map(([k, v]) => `${k}=${v}`).join(', '))}</p>`
    : `${sideBySide}<p>Server /stats: not available (${esc(s.server.stats.reason ?? '')})</p>`;
  return `
<section>
<h2>${esc(s.name)} <span class="grade g${esc(s.grade.grade.replace('+', 'p'))}">${esc(s.grade.grade)}</span></h2>
<p>${esc(s.description)}${s.status === 'failed' ? ` — <b>failed: ${esc(s.error ?? '')}</b>` : ''}</p>
${s.grade.reasons.length + s.notes.length ? `<ul>${s.grade.reasons.map((r) => `<li>below A+: ${esc(r)}</li>`).join('')}${s.notes.map((r) => `<li>note: ${esc(r)}</li>`).join('')}</ul>` : ''}
<div class="charts"><figure>${percentilePlot(s)}<figcaption>Latency by percentile (merged HDR histograms of all loadgen threads)</figcaption></figure>
<figure>${timePlot(s)}<figcaption>Fan-out latency over time, per second</figcaption></figure></div>
<table><tr><th>latency (ms)</th><th>P50</th><th>P95</th><th>P99</th><th>P99.9</th><th>max</th><th>count</th></tr>
${lat('pub fan-out (corrected)', l.fanout)}${lat('pub fan-out (uncorrected)', l.fanoutUncorrected)}${lat('send → delivery', l.send)}${lat('ping round trip', l.ping)}${lat('ping round trip (uncorrected)', l.pingUncorrected)}${lat('pub → ack', l.pubAck)}${lat('connect', l.connect)}${lat('generator schedule lag (sent − due; the corrected rows include it)', l.scheduleLag)}
</table>
<table>
${row(['connections', `${s.connections.ok}/${s.connections.attempts} welcomed (${fmtPct(s.connections.successRate)}), peak ${s.connections.peak}, ${s.connections.unexpectedCloses} closed by the server`])}
${row(['throughput', `${fmtRate(s.throughput.totalDeliveredPerS)} deliveries/s of ${fmtRate(s.offered.deliveriesPerS)} offered; ${fmtRate(s.throughput.pubsPerS)} pubs/s`])}
${row(['deliveries', `${s.delivery.pubReceived}/${s.delivery.pubExpected} owed pub deliveries received, ${s.delivery.pubLost} lost (${fmtPct(s.delivery.pubLossRate)}), duplicates ${esc(duplicatesText(s.delivery))}`])}
${s.recovery ? row(['recovery', esc(recoveryText(s.recovery))]) : ''}
${row(['send', s.send.supported ? `${s.delivery.sendReceived}/${s.delivery.sendExpected} received, ${s.delivery.sendLost} lost` : esc(s.send.note)])}
${row(['errors', `${s.errors.count} of ${s.errors.operations} operations (${fmtPct(s.errors.rate)}) ${esc(JSON.stringify(s.errors.errFrames))}`])}
${row(['generator', `${s.generator.threads} threads, event loops ${s.generator.eluPerThread.map(fmtPct).join(' / ')}, pacing ${esc(pacingText(s.generator))}${s.generator.bottleneck ? ` — <b>bottleneck</b>: ${esc(s.generator.reasons.join('; '))}` : ''}`])}
${row(['server resources', `RSS ${fmtBytes(s.server.rssStartBytes)} → ${fmtBytes(s.server.rssEndBytes)} (peak ${fmtBytes(s.server.rssPeakBytes)}), CPU ${s.server.cpuPercent === null ? 'n/a' : `${s.server.cpuPercent.toFixed(0)}% of a core`}`])}
${s.ramp ? row(['ramp', esc(`peak ${s.ramp.peakConnections}, stopped by ${s.ramp.stoppedBy}: ${s.ramp.note}`)]) : ''}
${s.drift ? row(['drift', esc(`P99 ${fmtMs(s.drift.p99FirstMs)} → ${fmtMs(s.drift.p99LastMs)} ms; server RSS ${fmtBytes(s.drift.serverRssFirstBytes)} → ${fmtBytes(s.drift.serverRssLastBytes)} (first vs last ${s.drift.windowS} s)`)]) : ''}
</table>
<h3>Server's own view</h3>${server}
</section>`;
}

export function renderHtml(r: RunReport): string {
  const summary = r.scenarios
    .map((s) =>
      row([esc(s.name), String(s.connections.peak), fmtMs(s.latency.fanout.p50Ms), fmtMs(s.latency.fanout.p95Ms), fmtMs(s.latency.fanout.p99Ms), fmtMs(s.latency.scheduleLag.p99Ms), fmtRate(s.throughput.totalDeliveredPerS), fmtPct(s.errors.rate), fmtPct(s.delivery.pubLossRate), esc(s.grade.grade)]),
    )
    .join('');
  const gradeTable = gradeTableMarkdown()
    .split('\n')
    .filter((l) => !l.startsWith('|---'))
    .map((l, i) => row(l.split('|').slice(1, -1).map((c) => esc(c.trim())), i === 0 ? 'th' : 'td'))
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ocs.v1 load test ${esc(r.startedAt)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1340px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
svg text{font-size:11px;fill:#333}.grid{stroke:#e4e4e4}.charts{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0}figcaption{font-size:12px;color:#555}
.grade{padding:1px 8px;border-radius:4px;color:#fff;background:#888}.gAp,.gA{background:#2ca02c}.gB{background:#8fbc1f}.gC{background:#e6a100}.gD{background:#e6550d}.gF{background:#d62728}
section{border-top:1px solid #ddd;margin-top:20px}
</style></head><body>
<h1>ocs.v1 load test — overall <span class="grade g${esc(r.overall.grade.replace('+', 'p'))}">${esc(r.overall.grade)}</span></h1>
<p>Target ${esc(`${r.target.host}:${r.target.port}`)}${r.target.launched ? ' (started by the load tester)' : ''}; send: ${esc(r.target.sendNote)}; ${esc(`${r.startedAt} → ${r.finishedAt}`)}; ${r.machine.cpus} CPUs, Node ${esc(r.machine.node)}.
Latencies are counted from when each message was due (coordinated-omission corrected) unless marked uncorrected.</p>
<table><tr><th>scenario</th><th>conns</th><th>P50 ms</th><th>P95 ms</th><th>P99 ms</th><th>generator lag P99 ms</th><th>delivered/s</th><th>errors</th><th>loss</th><th>grade</th></tr>${summary}</table>
${r.scenarios.map(scenarioSection).join('\n')}
<section><h2>Grade table</h2><table>${gradeTable}</table></section>
</body></html>
`;
}

export function writeHtmlReport(file: string, r: RunReport): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, renderHtml(r));
}

/** The report as text for the terminal: one summary table, then what each scenario needs said. */
import { duplicatesText, fmtBytes, fmtMs, fmtPct, fmtRate, pacingText, recoveryText, table } from './format.js';
import type { RunReport, ScenarioReport } from './report-types.js';
import { sideBySideRows, windowNote } from './report-server.js';

export function renderTerminal(r: RunReport): string {
  const out: string[] = [];
  out.push(`ocs.v1 load test — ${r.target.host}:${r.target.port}${r.target.launched ? ' (server started by the load tester)' : ''}`);
  out.push(`send: ${r.target.sendNote}`);
  out.push('');
  out.push(
    table(
      ['scenario', 'conns', 'conn ok', 'fan-out P50', 'P95', 'P99', 'max ms', 'ping P99', 'lag P99', 'delivered/s', 'offered/s', 'errors', 'lost', 'grade'],
      r.scenarios.map((s) => [
        s.name,
        String(s.connections.peak),
        fmtPct(s.connections.successRate),
        fmtMs(s.latency.fanout.p50Ms),
        fmtMs(s.latency.fanout.p95Ms),
        fmtMs(s.latency.fanout.p99Ms),
        fmtMs(s.latency.fanout.maxMs),
        fmtMs(s.latency.ping.p99Ms),
        fmtMs(s.latency.scheduleLag.p99Ms),
        fmtRate(s.throughput.totalDeliveredPerS),
        fmtRate(s.offered.deliveriesPerS),
        fmtPct(s.errors.rate),
        String(s.delivery.pubLost + s.delivery.sendLost),
        s.grade.grade,
      ]),
    ),
  );
  out.push('Latencies are corrected for coordinated omission (counted from when each message was due).');
  out.push("lag: the generator's own schedule lag (sent − due), which the corrected latencies include.");
  for (const s of r.scenarios) out.push('', ...scenarioDetail(s));
  out.push('', `Overall grade: ${r.overall.grade}  (mean of the scenario grades; table in docs/loadtest.md)`);
  return out.join('\n');
}

function scenarioDetail(s: ScenarioReport): string[] {
  const lines = [`${s.name} — ${s.grade.grade}${s.status === 'failed' ? ` (FAILED: ${s.error})` : ''}`];
  if (s.status === 'failed') return lines;
  const l = s.latency;
  lines.push(
    `  latency ms        P50     P95     P99     max    count`,
    ...(
      [
        ['fan-out', l.fanout],
        ['  uncorrected', l.fanoutUncorrected],
        ['send→delivery', l.send],
        ['ping RTT', l.ping],
        ['  uncorrected', l.pingUncorrected],
        ['pub→ack', l.pubAck],
        ['connect', l.connect],
        ['schedule lag', l.scheduleLag],
      ] as const
    ).map(([name, v]) =>
      `  ${name.padEnd(14)} ${fmtMs(v.p50Ms).padStart(7)} ${fmtMs(v.p95Ms).padStart(7)} ${fmtMs(v.p99Ms).padStart(7)} ${fmtMs(v.maxMs).padStart(7)} ${String(v.count).padStart(8)}`,
    ),
  );
  const d = s.delivery;
  lines.push(
    `  deliveries: ${d.pubReceived}/${d.pubExpected} pub deliveries owed were received (lost ${d.pubLost}, ${fmtPct(d.pubLossRate)}), duplicates ${duplicatesText(d)}, unacknowledged pubs ${d.pubsUnacknowledged}`,
  );
  lines.push(
    s.send.supported
      ? `  send: ${d.sendReceived}/${d.sendExpected} received (lost ${d.sendLost}), ${d.sendPendingOffline} pending for offline users`
      : `  send: ${s.send.note}`,
  );
  const c = s.connections;
  lines.push(
    `  connections: ${c.ok}/${c.attempts} welcomed, ${c.failed} failed${Object.keys(c.failures).length ? ` (${Object.entries(c.failures).map(([k, v]) => `${k}: ${v}`).join(', ')})` : ''}, ${c.unexpectedCloses} closed by the server${Object.keys(c.closeCodes).length ? ` (codes ${Object.entries(c.closeCodes).map(([k, v]) => `${k}×${v}`).join(', ')})` : ''}`,
  );
  if (Object.keys(s.errors.errFrames).length) lines.push(`  err frames: ${Object.entries(s.errors.errFrames).map(([k, v]) => `${k}×${v}`).join(', ')}`);
  if (s.errors.pubsDeferred > 0) lines.push(`  ${s.errors.pubsDeferred} pubs waited for the in-flight window (the server was slower than the schedule)`);
  if (s.ramp) lines.push(`  ramp: peak ${s.ramp.peakConnections} connections, stopped by ${s.ramp.stoppedBy}: ${s.ramp.note}`);
  if (s.recovery) lines.push(`  ${recoveryText(s.recovery)}`);
  if (s.drift) {
    lines.push(
      `  drift (first vs last ${s.drift.windowS} s): P50 ${fmtMs(s.drift.p50FirstMs)} → ${fmtMs(s.drift.p50LastMs)} ms, P99 ${fmtMs(s.drift.p99FirstMs)} → ${fmtMs(s.drift.p99LastMs)} ms, server RSS ${fmtBytes(s.drift.serverRssFirstBytes)} → ${fmtBytes(s.drift.serverRssLastBytes)}`,
    );
  }
  lines.push(...serverSideBySide(s));
  const g = s.generator;
  lines.push(
    `  generator: ${g.threads} threads (${g.transport}), event loops ${g.eluPerThread.map((e) => fmtPct(e)).join(' / ')} busy, pacing ${pacingText(g)}, CPU ${g.cpuPercent.toFixed(0)}% of a core${g.bottleneck ? ' — BOTTLENECK: ' + g.reasons.join('; ') : ''}`,
  );
  for (const reason of s.grade.reasons) lines.push(`  below A+: ${reason}`);
  for (const note of s.notes) lines.push(`  note: ${note}`);
  return lines;
}

function serverSideBySide(s: ScenarioReport): string[] {
  const sv = s.server;
  const res = `server resources: RSS ${fmtBytes(sv.rssStartBytes)} → ${fmtBytes(sv.rssEndBytes)} (peak ${fmtBytes(sv.rssPeakBytes)}), CPU ${sv.cpuPercent === null ? 'n/a' : `${sv.cpuPercent.toFixed(0)}% of a core`}`;
  const lines = [`  latency (ms), the load tester's end to end beside the server's own over the same window:`];
  lines.push(`    ${''.padEnd(12)}${'latency (ms)'.padEnd(44)} ${'P50'.padStart(8)} ${'P95'.padStart(8)} ${'P99'.padStart(8)} ${'P99.9'.padStart(8)} ${'count'.padStart(9)}`);
  for (const r of sideBySideRows(s)) {
    lines.push(`    ${r.side.padEnd(12)}${r.label.padEnd(44)} ${fmtMs(r.p50Ms).padStart(8)} ${fmtMs(r.p95Ms).padStart(8)} ${fmtMs(r.p99Ms).padStart(8)} ${fmtMs(r.p999Ms).padStart(8)} ${String(r.count).padStart(9)}`);
  }
  lines.push(`  ${windowNote(s)}`);
  if (!sv.stats.available) return [...lines, `  server /stats: not available (${sv.stats.reason ?? 'unknown'})`, ...(sv.launched ? [`  ${res}`] : [])];
  // A server without the window: whatever percentiles its /stats holds, as it gives them.
  if (!sv.window?.available) {
    for (const m of sv.stats.latencies) lines.push(`    ${`server /stats ${m.metric} (${m.unit})`.padEnd(56)} ${String(m.p50).padStart(8)} ${String(m.p95).padStart(8)} ${String(m.p99).padStart(8)}`);
  }
  const resources = Object.entries(sv.stats.resources);
  if (resources.length) lines.push(`    server-reported: ${resources.slice(0, 8).map(([k, v]) => `${k}=${v}`).join(', ')}`);
  if (sv.launched) lines.push(`  ${res}`);
  return lines;
}

/**
 * One scenario's report, from its loadgen threads' results: merged histograms, exact
 * delivery totals, the error rate, whether the generator was the bottleneck, the grade, and
 * the drift between the first and last minutes. A scenario that failed gets a report too.
 */
import type { Histogram } from 'hdr-histogram-js';
import { computeDelivery, emptyDeliveryTotals } from './delivery.js';
import { HISTORY_RULE } from './defaults.js';
import { noDuplicates } from './duplicates.js';
import { orderViolations, type RecoveryCounters } from './order-check.js';
import { gradeScenario } from './grading.js';
import { mergeEncoded, percentileCurve, summarize } from '../lib/histogram.js';
import type { SendProbe } from './probe.js';
import { round3, sumValues } from './report-math.js';
import type { ScenarioReport, SeriesPoint } from './report-types.js';
import { offeredRates, type ScenarioSpec } from './scenarios.js';
import type { LaunchedServer } from './server-launcher.js';
import type { ServerStats } from './server-stats.js';
import { WINDOW_METHOD, type ServerWindow } from './server-window.js';
import { HISTOGRAM_NAMES, addCounters, emptyCounters, type WorkerResult } from './types.js';

/** The generator's schedule lag is noted when its P50 is at least this share of the graded latency's P50. */
const LAG_NOTE_SHARE = 0.1;

export interface BuildInput {
  spec: ScenarioSpec;
  server: LaunchedServer | null;
  probe: SendProbe;
  /** Pubs acknowledged this close to a receiver's leave are not owed to it (delivery.ts). */
  fenceUs: number;
  startedAt: string;
  wallSeconds: number;
  measureStartUs: number;
  measureEndUs: number;
  results: WorkerResult[];
  series: SeriesPoint[];
  seriesHistograms: string[];
  rampStop: string | null;
  cpuStart: NodeJS.CpuUsage;
  serverCpuStart: number | null;
  rssStart: number | null;
  rssPeak: number | null;
  stats: ServerStats;
  window: ServerWindow;
  threads: number;
}

export function buildReport(b: BuildInput): ScenarioReport {
  const { spec, results } = b;
  const c = results.reduce((acc, r) => addCounters(acc, r.counters), emptyCounters());
  const h = Object.fromEntries(HISTOGRAM_NAMES.map((name) => [name, mergeEncoded(results.map((r) => r.histograms[name]))])) as Record<
    (typeof HISTOGRAM_NAMES)[number],
    Histogram
  >;
  const seconds = Math.max(1e-6, (b.measureEndUs - b.measureStartUs) / 1e6);
  const delivery = computeDelivery(
    results.map((r) => r.delivery),
    { startUs: b.measureStartUs, endUs: b.measureEndUs, fenceUs: b.fenceUs },
  );
  const sendCounts = b.probe.supported && c.sendsUnsupported === 0;
  // What the scenario offered. Ramp, spike, churn and reconnect change who is online all the
  // time, so there it is what was owed (delivery.ts); a steady one is graded against its
  // schedule (connections × pub rate × group size, + sends), whether its connections stayed up
  // to keep it or not: counting only what was sent, a server that dropped half of them for half
  // the window was graded on the pubs its survivors sent (delivered 97% of that: A).
  const offered = offeredRates(spec);
  const owedPerS = (delivery.pubExpected + delivery.sendExpected) / seconds;
  const offeredPerS = spec.kind !== 'steady' ? owedPerS : offered.deliveriesPerS - (sendCounts ? 0 : offered.sendPerS);
  const deliveredPerS = (delivery.pubReceived + delivery.sendReceived) / seconds;

  const errFrameCount = sumValues(c.errFrames);
  const errors = c.connectFailed + c.unexpectedCloses + errFrameCount + delivery.pubsUnacknowledged;
  const operations = c.connectAttempts + c.pubsSent + c.sendsSent - c.sendsUnsupported + c.pingsSent;
  const errorRate = operations > 0 ? errors / operations : 0;
  const pubLossRate = delivery.pubExpected > 0 ? delivery.pubLost / delivery.pubExpected : 0;
  const sendLossRate = delivery.sendExpected > 0 ? delivery.sendLost / delivery.sendExpected : 0;
  const owed = delivery.pubExpected + delivery.sendExpected;
  const lossRate = owed > 0 ? (delivery.pubLost + delivery.sendLost) / owed : 0;

  const lat = {
    fanout: summarize(h.fanout),
    fanoutUncorrected: summarize(h.fanoutRaw),
    send: summarize(h.send),
    sendUncorrected: summarize(h.sendRaw),
    ping: summarize(h.ping),
    pingUncorrected: summarize(h.pingRaw),
    connect: summarize(h.connect),
    pubAck: summarize(h.pubAck),
    scheduleLag: summarize(h.scheduleLag),
  };
  const gradedLatency = lat.fanout.count > 0 ? lat.fanout : lat.ping;

  // Was the generator the bottleneck? Its threads' event loops saturated, or its schedule slipping.
  const scheduled = c.window.pubsSent + c.window.sendsSent + c.window.pingsSent;
  const lateFraction = scheduled > 0 ? c.lateSends / scheduled : 0;
  const genReasons: string[] = [];
  results.forEach((r, i) => {
    if (r.elu >= 0.9) genReasons.push(`loadgen thread ${i} event loop ${(r.elu * 100).toFixed(0)}% busy`);
  });
  if (lateFraction > 0.01) genReasons.push(`${(lateFraction * 100).toFixed(1)}% of scheduled messages left more than 10 ms late`);
  if (lat.scheduleLag.p99Ms > 10) genReasons.push(`send-schedule lag P99 ${lat.scheduleLag.p99Ms.toFixed(1)} ms`);
  const threadUs = Math.max(1, b.threads * b.wallSeconds * 1e6);
  const cpu = process.cpuUsage(b.cpuStart);
  const cpuPercent = round3(((cpu.user + cpu.system) / 1e6 / b.wallSeconds) * 100);

  const grade = gradeScenario({ p95Ms: gradedLatency.p95Ms, p99Ms: gradedLatency.p99Ms, errorRate, lossRate, deliveredPerS, offeredPerS });
  const notes: string[] = [];
  if (genReasons.length > 0) notes.push(`the generator may have limited this result: ${genReasons.join('; ')}`);
  const lag = lat.scheduleLag;
  if (lag.count > 0 && gradedLatency.p50Ms > 0 && lag.p50Ms >= LAG_NOTE_SHARE * gradedLatency.p50Ms) {
    notes.push(
      `the generator sent late by ${lag.p50Ms} ms at P50 (P99 ${lag.p99Ms}, max ${lag.maxMs}): that is ${Math.round((lag.p50Ms / gradedLatency.p50Ms) * 100)}% of the corrected ${lat.fanout.count > 0 ? 'fan-out' : 'ping'} P50, which includes it`,
    );
  }
  const dup = c.duplicates;
  if (dup.sameConnection > 0) notes.push(`${dup.sameConnection} deliveries arrived twice on the same connection: the server sent them twice (a defect)`);
  if (!sendCounts && spec.rates.send > 0) notes.push(`send was not tested: ${b.probe.supported ? 'unsupported by the server' : b.probe.note}`);

  const serverCpuEnd = b.server?.cpuSeconds() ?? null;
  const rssEnd = b.server?.rssBytes() ?? null;
  const report: ScenarioReport = {
    name: spec.name,
    description: spec.description,
    kind: spec.kind,
    spec,
    status: 'ok',
    startedAt: b.startedAt,
    wallSeconds: round3(b.wallSeconds),
    measuredSeconds: round3(seconds),
    connections: {
      target: spec.connections,
      peak: Math.max(results.reduce((s, r) => s + r.peakActive, 0), 0),
      attempts: c.connectAttempts,
      ok: c.connectOk,
      failed: c.connectFailed,
      successRate: c.connectAttempts > 0 ? c.connectOk / c.connectAttempts : 0,
      failures: c.connectFailures,
      unexpectedCloses: c.unexpectedCloses,
      closeCodes: c.closeCodes,
    },
    offered: { ...offered, deliveriesPerS: round3(offeredPerS) },
    throughput: {
      pubsPerS: round3(c.window.pubsSent / seconds),
      deliveriesPerS: round3(c.window.deliveries / seconds),
      sendDeliveriesPerS: round3(c.window.sendDeliveries / seconds),
      totalDeliveredPerS: round3(deliveredPerS),
      bytesInPerS: round3(c.bytesIn / b.wallSeconds),
      bytesOutPerS: round3(c.bytesOut / b.wallSeconds),
    },
    latency: lat,
    percentileCurves: {
      fanout: percentileCurve(h.fanout),
      fanoutUncorrected: percentileCurve(h.fanoutRaw),
      send: percentileCurve(h.send),
      ping: percentileCurve(h.ping),
      pingUncorrected: percentileCurve(h.pingRaw),
      connect: percentileCurve(h.connect),
      scheduleLag: percentileCurve(h.scheduleLag),
    },
    delivery: { ...delivery, pubLossRate, sendLossRate, duplicates: sumValues(dup), duplicateKinds: dup, deliveriesTotal: c.deliveries + c.sendDeliveries },
    errors: {
      count: errors,
      operations,
      rate: errorRate,
      errFrames: c.errFrames,
      pubsRejected: c.pubsRejected,
      sendsRejected: c.sendsRejected,
      pubsDeferred: c.pubsDeferred,
    },
    send: {
      supported: sendCounts,
      note: sendCounts ? 'supported' : c.sendsUnsupported > 0 ? 'unsupported by the server (E_BAD_FRAME unknown op)' : b.probe.note,
      unsupportedReplies: c.sendsUnsupported,
    },
    generator: {
      threads: b.threads,
      transport: results[0]?.transport ?? '',
      eluPerThread: results.map((r) => round3(r.elu)),
      cpuPercent,
      lateSends: c.lateSends,
      lateFraction,
      pacing: {
        blockedPercent: round3((c.pacingBlockedUs / threadUs) * 100),
        spinPercent: round3((c.pacingSpunUs / threadUs) * 100),
      },
      priority: results.map((r) => r.priority),
      maxBufferedBytes: c.maxBufferedAmount,
      bottleneck: genReasons.length > 0,
      reasons: genReasons,
    },
    server: {
      launched: b.server !== null,
      rssStartBytes: b.rssStart,
      rssEndBytes: rssEnd,
      rssPeakBytes: b.rssPeak,
      cpuPercent: serverCpuEnd !== null && b.serverCpuStart !== null ? round3(((serverCpuEnd - b.serverCpuStart) / b.wallSeconds) * 100) : null,
      stats: b.stats,
      window: b.window,
    },
    timeSeries: b.series,
    grade,
    notes,
  };
  if (spec.kind === 'ramp' && spec.ramp) {
    const peak = report.connections.peak;
    const stoppedBy = b.rampStop ? 'errors' : peak >= spec.ramp.max ? 'limit' : 'duration';
    report.ramp = {
      peakConnections: peak,
      stoppedBy,
      note: b.rampStop ?? (stoppedBy === 'limit' ? `reached the limit of ${spec.ramp.max} connections` : `duration ended at ${peak} connections`),
    };
  }
  if (spec.drift) report.drift = drift(b.series, b.seriesHistograms, spec.drift.windowS, seconds);
  if (spec.kind === 'reconnect') addRecovery(report, c.recovery);
  return report;
}

/**
 * The reconnect scenario's verdict: every user got each message of its group once, in order,
 * and every recovery said what it did. A violation is a server defect: the grade is F.
 */
function addRecovery(report: ScenarioReport, r: RecoveryCounters): void {
  const violations = orderViolations(r);
  const exactlyOnce = violations === 0 && r.epochChanges === 0 && r.inOrder > 0;
  report.recovery = { ...r, exactlyOnce };
  if (r.notRecovered > 0) report.notes.push(`${r.notRecovered} of ${r.rejoins} rejoins were answered recovered: false (history no longer kept, or more than history.max_replay_bytes): those users would reload`);
  if (r.rejoins > 0 && r.recovered + r.notRecovered < r.rejoins) report.notes.push(`${r.rejoins - r.recovered - r.notRecovered} rejoins got no joined with an offset: does the server keep history for ${HISTORY_RULE.pattern}?`);
  if (exactlyOnce) return;
  const why =
    r.inOrder === 0
      ? `no message carried an offset: the server keeps no history for ${HISTORY_RULE.pattern} (websocket.history)`
      : `exactly-once order per group violated: ${r.gaps} skipped, ${r.duplicates} repeated or out of order, ${r.mismatches} recoveries ending elsewhere than joined's offset, ${r.epochChanges} epoch changes`;
  report.grade = { grade: 'F', points: 0, reasons: [...report.grade.reasons, why] };
}

/** Latency and memory in the first window of the measurement against the last one. */
function drift(series: SeriesPoint[], hists: string[], windowS: number, seconds: number): ScenarioReport['drift'] {
  const pick = (from: number, to: number): number[] => series.flatMap((p, i) => (p.t > from && p.t <= to ? [i] : []));
  const first = pick(0, windowS);
  const last = pick(seconds - windowS, seconds);
  const lat = (idx: number[]) => summarize(mergeEncoded(idx.map((i) => hists[i]!)));
  const rss = (idx: number[]): number | null => {
    const v = idx.map((i) => series[i]!.serverRssBytes).filter((x): x is number => x !== null);
    return v.length > 0 ? Math.round(v.reduce((s, x) => s + x, 0) / v.length) : null;
  };
  const a = lat(first);
  const z = lat(last);
  return { windowS, p50FirstMs: a.p50Ms, p50LastMs: z.p50Ms, p99FirstMs: a.p99Ms, p99LastMs: z.p99Ms, serverRssFirstBytes: rss(first), serverRssLastBytes: rss(last) };
}

export function failedReport(spec: ScenarioSpec, startedAt: string, wallSeconds: number, error: string): ScenarioReport {
  const empty = summarize(mergeEncoded([]));
  return {
    name: spec.name,
    description: spec.description,
    kind: spec.kind,
    spec,
    status: 'failed',
    error,
    startedAt,
    wallSeconds: round3(wallSeconds),
    measuredSeconds: 0,
    connections: { target: spec.connections, peak: 0, attempts: 0, ok: 0, failed: 0, successRate: 0, failures: {}, unexpectedCloses: 0, closeCodes: {} },
    offered: offeredRates(spec),
    throughput: { pubsPerS: 0, deliveriesPerS: 0, sendDeliveriesPerS: 0, totalDeliveredPerS: 0, bytesInPerS: 0, bytesOutPerS: 0 },
    latency: { fanout: empty, fanoutUncorrected: empty, send: empty, sendUncorrected: empty, ping: empty, pingUncorrected: empty, connect: empty, pubAck: empty, scheduleLag: empty },
    percentileCurves: { fanout: [], fanoutUncorrected: [], send: [], ping: [], pingUncorrected: [], connect: [], scheduleLag: [] },
    delivery: {
      ...emptyDeliveryTotals(),
      pubLossRate: 0,
      sendLossRate: 0,
      duplicates: 0,
      duplicateKinds: noDuplicates(),
      deliveriesTotal: 0,
    },
    errors: { count: 0, operations: 0, rate: 0, errFrames: {}, pubsRejected: 0, sendsRejected: 0, pubsDeferred: 0 },
    send: { supported: false, note: 'scenario failed', unsupportedReplies: 0 },
    generator: { threads: 0, transport: '', eluPerThread: [], cpuPercent: 0, lateSends: 0, lateFraction: 0, pacing: { blockedPercent: 0, spinPercent: 0 }, priority: [], maxBufferedBytes: 0, bottleneck: false, reasons: [] },
    server: { launched: false, rssStartBytes: null, rssEndBytes: null, rssPeakBytes: null, cpuPercent: null, stats: { available: false, reason: 'scenario failed', latencies: [], resources: {} }, window: { available: false, reason: 'scenario failed', method: WINDOW_METHOD, latencies: {} } },
    timeSeries: [],
    grade: { grade: 'F', points: 0, reasons: [`the scenario failed: ${error}`] },
    notes: [],
  };
}

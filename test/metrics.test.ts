import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { createLogger, type Logger } from '../src/util/logger.js';
import { configSchema } from '../src/config/schema.js';
import { decodeFields, encodeRecord, ToBroker } from '../src/link/records.js';
import { Alerts, type AlertInputs } from '../src/metrics/alerts.js';
import type { JsHistogram } from 'hdr-histogram-js';
import { inflateSync } from 'node:zlib';
import * as hdr from 'hdr-histogram-js';
import { epochMs, followWallClock } from '../src/metrics/clock.js';
import fc from 'fast-check';
import { addSparseCounts, encodeHistogram, newHistogram, summarizeSparse, type Histogram } from '../src/metrics/hdr.js';
import { sparseCounts } from './helpers/hdr-reference.js';
import { MetricsHub, type MetricsView } from '../src/metrics/hub.js';
import { renderAlertsJson } from '../src/metrics/stats-json.js';
import { Latency } from '../src/metrics/latencies.js';
import { BUCKETS_S } from '../src/metrics/prometheus.js';
import { reportToFields } from '../src/metrics/report.js';
import { createSnapshotBuffer, SnapshotDoc, SnapshotReader, SnapshotWriter } from '../src/metrics/snapshot.js';
import { ThreadMetrics } from '../src/metrics/thread-metrics.js';
import { ErrorCodes } from '../src/protocol/errors.js';
import { createRingBuffer } from '../src/rings/ring.js';
import { createShardTable, ShardTable } from '../src/shared/shard-table.js';
import { errorCounter, MESSAGING_COUNTERS, type MessagingCounterName } from '../src/shared/shard-counters.js';
import { parseExposition, promtoolCheck, seriesKey } from './helpers/prometheus.js';
/** The Summary of a whole histogram, from its non-zero buckets. */
const summarize = (h: Histogram) => summarizeSparse(h, sparseCounts(h));

const monitoring = (alerts: Record<string, unknown> = {}) => configSchema.parse({ websocket: { monitoring: { alerts } } }).websocket.monitoring;

/** A logger whose lines the test reads. */
function capturedLog(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const log: Logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { log, lines };
}

/** The primary's hub over a real shard table, real rings and a real snapshot area, without threads. */
function hubFor(shards: number) {
  const table = new ShardTable(createShardTable(shards));
  const buffer = createSnapshotBuffer(shards, 100);
  const ring = (): SharedArrayBuffer => createRingBuffer(64 * 1024);
  const hub = new MetricsHub({
    table,
    monitoring: monitoring(),
    maxConnections: 100,
    version: 'test',
    log: capturedLog().log,
    snapshot: new SnapshotWriter(buffer, shards, 100),
    rings: {
      shardToShard: Array.from({ length: shards }, (_, from) => Array.from({ length: shards }, (_, to) => (from === to ? null : ring()))),
      toBroker: Array.from({ length: shards }, ring),
      fromBroker: Array.from({ length: shards }, ring),
    },
    broker: () => ({ stats: Object.fromEntries(MESSAGING_COUNTERS.map((name) => [name, 0])) as Record<MessagingCounterName, number>, depth: { stored: 0, inflight: 0 }, history: null, disk: null }),
    requestReports: () => {},
  });
  return { hub, reader: new SnapshotReader(buffer, shards, 100) };
}

/** A shard's report as it travels: a METRICS record encoded for the ring, then decoded by the broker's side. */
function travel(metrics: ThreadMetrics, shard: number): unknown[] {
  const record = encodeRecord(ToBroker.METRICS, reportToFields(metrics.report(shard)));
  assert.equal(record[0], ToBroker.METRICS);
  return decodeFields(record, 0, record.byteLength);
}

/** Latencies (µs) none of which lies within 1% of a bucket bound, so HDR's 0.1% cannot move one across. */
function latencies(count: number, from: number, to: number, seed: number): number[] {
  const out: number[] = [];
  let x = seed;
  while (out.length < count) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const v = Math.round(from * (to / from) ** (x / 2 ** 31));
    if (BUCKETS_S.every((b) => Math.abs(v - b * 1e6) > b * 1e4)) out.push(v);
  }
  return out;
}

describe('merged latency histograms', () => {
  const fast = latencies(3000, 20, 3000, 1);
  const slow = latencies(700, 500, 400_000, 2);
  const { hub, reader } = hubFor(2);
  const shard0 = new ThreadMetrics();
  const shard1 = new ThreadMetrics();
  for (const v of fast) shard0.recordUs(Latency.pub, v);
  for (const v of slow) shard1.recordUs(Latency.pub, v);
  const all = newHistogram();
  for (const v of [...fast, ...slow]) all.recordValue(v);
  const expected = summarize(all);
  hub.acceptRecord(0, travel(shard0, 0));
  hub.acceptRecord(1, travel(shard1, 1));
  const view = hub.publish();
  const pub = view.latency[Latency.pub]!;
  // As a request does: ask for the documents, and the primary renders them from the view.
  reader.want(SnapshotDoc.METRICS);
  reader.want(SnapshotDoc.STATS);
  hub.renderWanted();

  test('P50 and P99 of two shards merged equal those of one histogram holding every value', () => {
    for (const window of [pub.interval, pub.total]) {
      assert.equal(window.count, fast.length + slow.length);
      assert.equal(window.p50, expected.p50);
      assert.equal(window.p99, expected.p99);
      // The max travels as its bucket's highest equivalent value (within 0.1%).
      assert.equal(window.max, (all as JsHistogram).highestEquivalentValue(expected.max));
    }
    // What merging avoids: the mean of the shards' own P99s is another number altogether.
    const own = view.threads.filter((t) => t.thread >= 0).map((t) => t.interval[Latency.pub]!.p99);
    assert.notEqual((own[0]! + own[1]!) / 2, expected.p99);
  });

  test("each shard's own figures travel with it, for /stats per shard", () => {
    const perShard = view.threads.filter((t) => t.thread >= 0);
    assert.deepEqual(
      perShard.map((t) => t.interval[Latency.pub]!.count),
      [fast.length, slow.length],
    );
  });

  test('/metrics holds the merged histogram as cumulative le buckets, with _sum and _count, in a valid exposition', () => {
    const text = reader.read(SnapshotDoc.METRICS)!.toString();
    const { samples } = parseExposition(text);
    const byKey = new Map(samples.map((s) => [seriesKey(s.name, s.labels), s.value]));
    const values = [...fast, ...slow];
    for (const le of BUCKETS_S) {
      assert.equal(byKey.get(seriesKey('ocs_pub_latency_seconds_bucket', { le: String(le) })), values.filter((v) => v <= le * 1e6).length, `le=${le}`);
    }
    assert.equal(byKey.get(seriesKey('ocs_pub_latency_seconds_bucket', { le: '+Inf' })), values.length);
    assert.equal(byKey.get(seriesKey('ocs_pub_latency_seconds_count', {})), values.length);
    const sum = values.reduce((a, b) => a + b, 0) / 1e6;
    assert.ok(Math.abs(byKey.get(seriesKey('ocs_pub_latency_seconds_sum', {}))! - sum) < sum * 0.001);
    assert.equal(byKey.get(seriesKey('ocs_latency_percentile_seconds', { latency: 'pub', window: 'interval', percentile: '99' })), expected.p99 / 1e6);
    const complaints = promtoolCheck(text);
    if (complaints !== null) assert.equal(complaints, '', 'promtool check metrics');
  });

  test('/stats gets the same merged figures, in ms', () => {
    const stats = JSON.parse(reader.read(SnapshotDoc.STATS)!.toString()) as { latency: Record<string, { since_start: Record<string, number> }> };
    assert.equal(stats.latency.pub!.since_start.count, fast.length + slow.length);
    assert.equal(stats.latency.pub!.since_start.p99_ms, expected.p99 / 1000);
  });

  test('the next interval holds only the reports that came in since, while since-start keeps everything', () => {
    hub.acceptRecord(0, travel(shard0, 0));
    const next = hub.publish().latency[Latency.pub]!;
    assert.equal(next.interval.count, 0);
    assert.equal(next.total.count, fast.length + slow.length);
  });
});

test("a summary's percentiles and mean are the histogram's own", () => {
  const h = newHistogram();
  for (const v of [...latencies(5000, 5, 2_000_000, 3), 7, 7, 7]) h.recordValue(v);
  const s = summarize(h);
  const max = h.maxValue;
  assert.deepEqual(
    [s.p50, s.p90, s.p95, s.p99, s.p999],
    [50, 90, 95, 99, 99.9].map((p) => Math.min(h.getValueAtPercentile(p), max)),
  );
  assert.ok(Math.abs(s.mean - h.mean) < 1e-6 * h.mean);
  assert.equal(s.count, 5003);
});

describe('a thread measures its own event-loop delay', () => {
  test('a 120 ms block shows as a delay of at least the part past the probe being due', async () => {
    const metrics = new ThreadMetrics();
    metrics.monitorEventLoop(); // the first probe is due 50 ms from now
    // Blocking at once, not after a timer: a loaded machine could fire that timer after the
    // probe, which then (finding the thread idle) waits a second for the next one.
    const until = Date.now() + 120;
    while (Date.now() < until);
    await new Promise((resolve) => setTimeout(resolve, 30));
    const delay = metrics.report(0).interval[Latency.event_loop]!;
    metrics.stop();
    assert.ok(delay.count > 0);
    assert.ok(delay.max >= 60_000, `max ${delay.max} µs`);
  });

  test('an idle thread is probed about once a second, a busy one every 50 ms', async () => {
    const metrics = new ThreadMetrics();
    metrics.monitorEventLoop();
    const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
    // Its first probes come every 50 ms until a period finds the thread idle: the file's own start
    // (or another test file's, on a busy machine) may keep it busy for a few of them.
    await sleep(1200);
    metrics.report(0);
    await sleep(3000);
    const idle = metrics.report(0).interval[Latency.event_loop]!.count;
    // Busy: 5 ms of work per turn for 1.5 s (the first probe after the idle spell comes within 1 s).
    const until = Date.now() + 1500;
    while (Date.now() < until) {
      const turn = Date.now() + 5;
      while (Date.now() < turn);
      await new Promise((resolve) => setImmediate(resolve));
    }
    const busy = metrics.report(0).interval[Latency.event_loop]!.count;
    metrics.stop();
    // About one a second (3), a blip of work bringing back a 50 ms probe or two; 60 at 50 ms.
    assert.ok(idle >= 2 && idle <= 6, `${idle} probes in 3 s idle`);
    assert.ok(busy >= 8, `${busy} probes in 1.5 s busy`);
  });

  test('a stopped probe records nothing more, and monitoring again starts it afresh', async () => {
    const metrics = new ThreadMetrics();
    const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
    metrics.monitorEventLoop();
    await sleep(120);
    metrics.stop();
    metrics.report(0);
    await sleep(200);
    assert.equal(metrics.report(0).interval[Latency.event_loop]!.count, 0);
    metrics.monitorEventLoop();
    const until = Date.now() + 80; // the loop held past the new probe's due time (50 ms)
    while (Date.now() < until);
    await sleep(30);
    const after = metrics.report(0).interval[Latency.event_loop]!;
    metrics.stop();
    assert.ok(after.count >= 1, `${after.count} probes after monitoring again`);
    assert.ok(after.max >= 20_000, `max ${after.max} µs: the block past the probe's due time`);
  });
});

describe('the snapshot area', () => {
  test('a reader gets what the writer published last; nothing before the first write', () => {
    const buffer = createSnapshotBuffer(1, 100);
    const writer = new SnapshotWriter(buffer, 1, 100);
    const reader = new SnapshotReader(buffer, 1, 100);
    assert.equal(reader.read(SnapshotDoc.ALERTS), null);
    assert.ok(writer.write(SnapshotDoc.ALERTS, '{"n":1}', 1));
    assert.ok(writer.write(SnapshotDoc.ALERTS, '{"n":"ä"}', 1));
    assert.equal(reader.read(SnapshotDoc.ALERTS)!.toString(), '{"n":"ä"}');
    assert.equal(reader.read(SnapshotDoc.METRICS), null, 'documents are independent');
  });

  test('a document larger than its area is refused and the previous one stays', () => {
    const buffer = createSnapshotBuffer(1, 100);
    const writer = new SnapshotWriter(buffer, 1, 100);
    const reader = new SnapshotReader(buffer, 1, 100);
    writer.write(SnapshotDoc.ALERTS, 'small', 1);
    writer.setView(2);
    assert.equal(writer.write(SnapshotDoc.ALERTS, 'x'.repeat(1024 * 1024), 2), false);
    assert.equal(reader.read(SnapshotDoc.ALERTS)!.toString(), 'small');
    assert.ok(reader.isCurrent(SnapshotDoc.ALERTS), 'counted as rendered from view 2: nobody waits for a render that cannot come');
  });

  test('/alerts fits its area with the longest history the schema takes, of the longest events (a client flapping an alert fills it)', () => {
    const history = 10_000;
    const alerts = new Alerts(monitoring({ history, latency_p95_ms: 1e-9, latency_p99_ms: 1.2345678901234567e-7, cpu_percent: 1.2345678901234567e-7, memory_percent: 1e-9, error_rate_percent: 1e-9, queue_depth: 999_999_999, disk_used_percent: 1e-9 }), createLogger('silent'));
    // Every rule raised and cleared in turn, with values of the most digits JSON writes.
    const high: AlertInputs = { latencyMs: { pub: { count: 1e9, p95: 1.2345678901234567e300, p99: 1.2345678901234567e300 }, send: { count: 1e9, p95: 1.2345678901234567e300, p99: 1.2345678901234567e300 } }, cpuRatio: 1.2345678901234567e298, memoryRatio: 1.2345678901234567e298, errors: 1e9, framesIn: 1e9, queueDepth: 1.2345678901234567e300, longestLinkWaitS: 1.2345678901234567e300, diskUsedRatio: 1.2345678901234567e298 };
    const low: AlertInputs = { ...high, latencyMs: { pub: { count: 0, p95: 0, p99: 0 }, send: { count: 0, p95: 0, p99: 0 } }, cpuRatio: 0, memoryRatio: 0, errors: 0, queueDepth: 0, longestLinkWaitS: 0, diskUsedRatio: null };
    for (let i = 0; alerts.history().length < history || i < 2; i++) alerts.evaluate(i % 2 === 0 ? high : low, 8.64e15 - i);
    alerts.evaluate(high);
    const text = renderAlertsJson({ at: Date.now(), alerts: { active: alerts.active(), recent: alerts.history(), statuses: alerts.statuses() } } as unknown as MetricsView);
    assert.ok(text.length > history * 100, `${text.length} bytes`);
    const writer = new SnapshotWriter(createSnapshotBuffer(1, history), 1, history);
    assert.ok(writer.write(SnapshotDoc.ALERTS, text, 1), `${text.length} bytes fit`);
  });

  test('a document is rendered only when asked for, from the last interval, once per interval', () => {
    const { hub, reader } = hubFor(1);
    reader.want(SnapshotDoc.METRICS);
    hub.renderWanted();
    assert.equal(reader.read(SnapshotDoc.METRICS), null, 'no interval is over: nothing to render from');
    hub.publish();
    assert.ok(reader.isCurrent(SnapshotDoc.METRICS), 'asked for before the first interval: rendered at its end');
    assert.equal(reader.read(SnapshotDoc.STATS), null, 'not asked for: not rendered');
    assert.equal(reader.isCurrent(SnapshotDoc.STATS), false);

    const first = reader.read(SnapshotDoc.METRICS)!.toString();
    hub.publish(Date.now() + 5000);
    assert.equal(reader.isCurrent(SnapshotDoc.METRICS), false, 'a new interval: the document is out of date until asked for again');
    assert.equal(reader.read(SnapshotDoc.METRICS)!.toString(), first, 'and the previous one is still there');
    reader.want(SnapshotDoc.METRICS);
    hub.renderWanted();
    assert.ok(reader.isCurrent(SnapshotDoc.METRICS));
    assert.notEqual(reader.read(SnapshotDoc.METRICS)!.toString(), first, 'rendered from the new interval (its uptime moved)');
    const version = reader.read(SnapshotDoc.METRICS)!.toString();
    hub.renderWanted();
    assert.equal(reader.read(SnapshotDoc.METRICS)!.toString(), version, 'not asked again: not rendered again');
  });
});

describe('alerts', () => {
  const quiet: AlertInputs = { latencyMs: { pub: { count: 100, p95: 1, p99: 2 }, send: { count: 0, p95: 0, p99: 0 } }, cpuRatio: 0.1, memoryRatio: 0.1, errors: 0, framesIn: 100, queueDepth: 0, longestLinkWaitS: 0, diskUsedRatio: 0.5 };
  const withPub = (p95: number): AlertInputs => ({ ...quiet, latencyMs: { ...quiet.latencyMs, pub: { count: 100, p95, p99: p95 } } });

  test('raised once over the threshold, kept while between it and threshold × clear_ratio, cleared below, one log line per change', () => {
    const { log, lines } = capturedLog();
    const alerts = new Alerts(monitoring({ latency_p95_ms: 100, clear_ratio: 0.9 }), log);
    alerts.evaluate(withPub(150));
    alerts.evaluate(withPub(160));
    alerts.evaluate(withPub(95));
    assert.deepEqual(alerts.active().map((a) => [a.alert, a.value]), [['pub_latency_p95', 95]]);
    alerts.evaluate(withPub(80));
    assert.deepEqual(alerts.active(), []);
    const changes = lines.filter((l) => l.alert === 'pub_latency_p95');
    assert.deepEqual(changes.map((l) => [l.msg, l.value, l.threshold]), [['alert raised', 150, 100], ['alert cleared', 80, 100]]);
    assert.deepEqual(alerts.history().map((e) => e.state), ['raised', 'cleared']);
  });

  test("each of the seed's thresholds is a rule, with its defaults", () => {
    const { log, lines } = capturedLog();
    const alerts = new Alerts(monitoring(), log);
    alerts.evaluate({ latencyMs: { pub: { count: 100, p95: 101, p99: 201 }, send: { count: 100, p95: 101, p99: 201 } }, cpuRatio: 0.81, memoryRatio: 0.86, errors: 6, framesIn: 100, queueDepth: 1001, longestLinkWaitS: 6, diskUsedRatio: 0.91 });
    assert.deepEqual(lines.map((l) => l.alert).sort(), ['cpu', 'disk', 'error_rate', 'link_stuck', 'memory', 'pub_latency_p95', 'pub_latency_p99', 'queue_depth', 'send_latency_p95', 'send_latency_p99']);
  });

  test('no store on this node (cluster mode): the disk alert reads as clear', () => {
    const { log } = capturedLog();
    const alerts = new Alerts(monitoring({ disk_used_percent: 1 }), log);
    alerts.evaluate({ ...quiet, diskUsedRatio: null });
    assert.deepEqual(alerts.active(), []);
    alerts.evaluate({ ...quiet, diskUsedRatio: 0.02 });
    assert.deepEqual(alerts.active().map((a) => [a.alert, a.value, a.unit]), [['disk', 2, '%']]);
  });

  test('too few samples in an interval read as clear, not as an alert', () => {
    const { log } = capturedLog();
    const alerts = new Alerts(monitoring({ min_samples: 20 }), log);
    alerts.evaluate({ ...quiet, latencyMs: { ...quiet.latencyMs, pub: { count: 3, p95: 5000, p99: 5000 } }, errors: 5, framesIn: 5 });
    assert.deepEqual(alerts.active(), []);
  });

  test('the history keeps the last `history` changes', () => {
    const { log } = capturedLog();
    const alerts = new Alerts(monitoring({ history: 3 }), log);
    for (let i = 0; i < 4; i++) {
      alerts.evaluate({ ...quiet, queueDepth: 5000 });
      alerts.evaluate(quiet);
    }
    assert.deepEqual(alerts.history().map((e) => e.state), ['cleared', 'raised', 'cleared']);
  });
});

test('every error code has a counter of its own', () => {
  const slots = Object.keys(ErrorCodes).map((code) => errorCounter[code as keyof typeof ErrorCodes]);
  assert.equal(new Set(slots).size, slots.length);
});

describe('sparse lists, as a thread reports its interval counts', () => {
  test('a histogram rebuilt from its sparse counts has the same count in every bucket', () => {
    const h = newHistogram();
    for (const v of latencies(5000, 1, 9_000_000, 3)) h.recordValue(v);
    const pairs = sparseCounts(h);
    const rebuilt = newHistogram();
    addSparseCounts(rebuilt, pairs);
    // The max comes back as its bucket's highest equivalent value (within 0.1%), as in HdrHistogram's own encoding.
    assert.deepEqual(summarize(rebuilt), { ...summarize(h), max: (h as JsHistogram).highestEquivalentValue(h.maxValue) });
    assert.ok(pairs.every((n) => Number.isInteger(n) && n >= 1), 'gaps and counts are small positive integers');
  });

  test('lists every non-zero bucket, whatever the lowest and highest values recorded (zero too)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 20_000_000 }), { minLength: 1, maxLength: 200 }), (values) => {
        const h = newHistogram() as JsHistogram;
        for (const v of values) h.recordValue(v);
        const expected: number[] = [];
        let previous = -1;
        for (let i = 0; i < h.countsArrayLength; i++) {
          if (h.getCountAtIndex(i) === 0) continue;
          expected.push(i - previous, h.getCountAtIndex(i));
          previous = i;
        }
        assert.deepEqual(sparseCounts(h), expected);
      }),
      { numRuns: 100 },
    );
  });

  test('a malformed list is refused, not half-believed', () => {
    for (const bad of [[1], [0, 5], [1, 0], [1.5, 2], [1e9, 1], [-1, 1]]) {
      assert.throws(() => addSparseCounts(newHistogram(), bad), TypeError, JSON.stringify(bad));
    }
  });
});

describe('the interchange encoding (/stats/histograms)', () => {
  test("is HdrHistogram's compressed V2 base64: hdr-histogram-js decodes it to the same counts", () => {
    const one = newHistogram();
    one.recordValue(1);
    const spread = newHistogram();
    for (const v of latencies(20_000, 1, 9_000_000, 3)) spread.recordValue(v);
    const resized = newHistogram();
    for (const v of latencies(2000, 1, 600_000_000, 3)) resized.recordValue(v); // past the starting range: autoResize
    const huge = newHistogram();
    huge.recordValueWithCount(700, 3e12); // counts past 32 bits take more LEB128 bytes
    huge.recordValue(50_000);
    for (const h of [one, spread, resized, huge]) {
      const ours = encodeHistogram(h);
      // The same bytes before compression as hdr-histogram-js's own encoder.
      const inflated = (text: string): Buffer => inflateSync(Buffer.from(text, 'base64').subarray(8));
      assert.deepEqual(inflated(ours), inflated(hdr.encodeIntoCompressedBase64(h)));
      // The max comes back as its bucket's highest equivalent value (within 0.1%), as HdrHistogram encodes it.
      const max = (h as JsHistogram).highestEquivalentValue(h.maxValue);
      assert.deepEqual(summarize(hdr.decodeFromCompressedBase64(ours, 64, false)), { ...summarize(h), max });
    }
    assert.equal(encodeHistogram(newHistogram()), '', 'an empty histogram is nothing to send');
  });
});

describe('the cross-thread clock (epochMs)', () => {
  test('follows a step of the wall clock at the next followWallClock(), and ignores drift under 100 ms', () => {
    const realNow = Date.now;
    let offset = 0;
    Date.now = () => realNow() + offset;
    try {
      const near = (ms: number): boolean => Math.abs(epochMs() - Date.now()) < ms;
      assert.ok(near(5));
      offset = -300_000; // stepped back 5 minutes
      assert.ok(!near(1_000), 'the monotonic clock did not follow');
      followWallClock();
      assert.ok(near(5), `${epochMs() - Date.now()} ms off after following`);
      offset += 50; // slewing-sized: not a step
      const before = epochMs();
      followWallClock();
      assert.ok(Math.abs(epochMs() - before) < 5, 'unchanged');
    } finally {
      Date.now = realNow;
      followWallClock();
    }
    assert.ok(Math.abs(epochMs() - Date.now()) < 5, 'back on the real clock');
  });
});

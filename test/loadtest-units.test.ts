/** Unit tests of the load tester's parts: no sockets, no threads. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { diffReports } from '../tools/loadtest/compare.js';
import { ABANDONED, computeDelivery, SeqSet } from '../tools/loadtest/delivery.js';
import { GRADE_TABLE, gradeScenario, overallGrade } from '../tools/loadtest/grading.js';
import { encodeHistogram, mergeEncoded, newHistogram, recordUs, summarize } from '../tools/lib/histogram.js';
import { renderHtml } from '../tools/loadtest/report-html.js';
import type { RunReport, ScenarioReport } from '../tools/loadtest/report-types.js';
import { DueQueue, GRID_ORIGIN_US, RateStream } from '../tools/loadtest/schedule.js';
import { applyOverrides, loadScenarios, meanFanout, offeredRates, parseScenarios, selectScenarios } from '../tools/loadtest/scenarios.js';
import { DEFAULT_SCENARIOS_FILE, main } from '../tools/loadtest/cli.js';
import { OcsError } from '../src/protocol/errors.js';
import { PUB_MARK, isFastPathFrame, makeData, scanPubMarkers, type Marker } from '../tools/loadtest/wire.js';

describe('scenarios', () => {
  it('loads the shipped file with every scenario the issue names', () => {
    const all = loadScenarios(DEFAULT_SCENARIOS_FILE);
    const names = all.map((s) => s.name);
    for (const n of ['baseline', 'moderate', 'high', 'extreme', 'ramp-up', 'spike', 'endurance', 'churn']) assert.ok(names.includes(n), n);
    assert.deepEqual(
      selectScenarios(all, { quick: true }).map((s) => s.name),
      ['baseline', 'moderate'],
    );
    assert.deepEqual(
      all.filter((s) => ['baseline', 'moderate', 'high', 'extreme'].includes(s.name)).map((s) => s.connections),
      [100, 500, 1000, 2000],
    );
  });

  it('names a bad key', () => {
    assert.throws(
      () => parseScenarios({ scenarios: { churn: { connections: 10, duration_s: 5, rates: { pubb: 1 } } } }, 'x.yaml'),
      (err: Error) => err.message.includes('scenarios.churn.rates: unrecognized key "pubb"'),
    );
    assert.throws(() => parseScenarios({ scenarios: { r: { kind: 'ramp', connections: 10, duration_s: 5 } } }), /scenarios\.r\.ramp: kind "ramp" needs a "ramp" section/);
    assert.throws(() => parseScenarios({ defaults: { warmup: 3 }, scenarios: {} }), /defaults: unrecognized key "warmup"/);
    assert.throws(() => selectScenarios(loadScenarios(DEFAULT_SCENARIOS_FILE), { names: ['nope'] }), /unknown scenario "nope"/);
  });

  it('fills defaults and applies overrides', () => {
    const [s] = parseScenarios({ defaults: { group_size: 7 }, scenarios: { a: { kind: 'spike', connections: 100, duration_s: 60, spike: { at_s: 30, connections: 50, hold_s: 10 } } } });
    assert.equal(s!.groupSize, 7);
    const o = applyOverrides(s!, { durationS: 6, connections: 10 });
    assert.equal(o.durationS, 6);
    assert.equal(o.spike!.atS, 3);
    assert.equal(o.spike!.connections, 5);
    assert.equal(o.groupSize, 7);
  });

  it('offers what the groups can carry: a last group smaller than group_size counts its own size (30 in groups of 25: 25 and 5)', () => {
    const moderate = applyOverrides(selectScenarios(loadScenarios(DEFAULT_SCENARIOS_FILE), { names: ['moderate'] })[0]!, { connections: 30 });
    assert.equal(moderate.groupSize, 25);
    assert.equal(meanFanout(moderate), (25 * 25 + 5 * 5) / 30);
    const { pubPerS, sendPerS, deliveriesPerS } = offeredRates(moderate);
    assert.ok(Math.abs(deliveriesPerS - (25 * moderate.rates.pub * 25 + 5 * moderate.rates.pub * 5 + sendPerS)) < 1e-9, String(deliveriesPerS));
    assert.ok(Math.abs(pubPerS - 30 * moderate.rates.pub) < 1e-9);
    assert.equal(meanFanout({ ...moderate, connections: 50 }), 25, 'groups that divide the connections: their size');
  });
});

describe('grading', () => {
  const base = { errorRate: 0, lossRate: 0, deliveredPerS: 100, offeredPerS: 100 };
  it("grades the seed's published results as the seed did", () => {
    assert.equal(gradeScenario({ ...base, p95Ms: 45, p99Ms: 80, errorRate: 0.001 }).grade, 'A+');
    assert.equal(gradeScenario({ ...base, p95Ms: 75, p99Ms: 150, errorRate: 0.003 }).grade, 'A');
    assert.equal(gradeScenario({ ...base, p95Ms: 95, p99Ms: 180, errorRate: 0.008, deliveredPerS: 1200, offeredPerS: 1200 }).grade, 'A');
    assert.equal(gradeScenario({ ...base, p95Ms: 140, p99Ms: 190, errorRate: 0.012 }).grade, 'B');
  });
  it('takes the worst criterion and says why', () => {
    const g = gradeScenario({ ...base, p95Ms: 10, p99Ms: 20, lossRate: 0.03 });
    assert.equal(g.grade, 'D');
    assert.equal(g.reasons.length, 1);
    assert.match(g.reasons[0]!, /loss rate 3\.00% → D \(C needs ≤ 2\.00%\)/);
    assert.equal(gradeScenario({ ...base, p95Ms: 5000, p99Ms: 9000 }).grade, 'F');
    // offered 1,000/s, delivered 990/s: 99% of offered, but under the seed's 1,000 msg/s, so not an A
    assert.equal(gradeScenario({ ...base, p95Ms: 5, p99Ms: 9, deliveredPerS: 990, offeredPerS: 1000 }).grade, 'B');
  });
  it('overall is the rounded-down mean', () => {
    assert.equal(overallGrade(['A+', 'A', 'A', 'B']).grade, 'A');
    assert.equal(overallGrade(['A+', 'F']).grade, 'C');
    assert.equal(overallGrade([]).grade, 'F');
    assert.equal(GRADE_TABLE[1]!.p95Ms, 100);
    assert.equal(GRADE_TABLE[1]!.p99Ms, 200);
  });
});

describe('histograms', () => {
  it('merging encoded per-thread histograms equals recording into one', () => {
    const a = newHistogram();
    const b = newHistogram();
    const all = newHistogram();
    for (let i = 1; i <= 1000; i++) {
      const v = i * 37;
      recordUs(i % 3 === 0 ? a : b, v);
      recordUs(all, v);
    }
    const merged = mergeEncoded([encodeHistogram(a), encodeHistogram(b), '']);
    const { maxMs, ...rest } = summarize(merged);
    const { maxMs: maxAll, ...restAll } = summarize(all);
    assert.deepEqual(rest, restAll);
    // the encoded form keeps the max to the histogram's resolution (3 significant digits)
    assert.ok(Math.abs(maxMs - maxAll) <= maxAll * 0.001, `${maxMs} vs ${maxAll}`);
    const s = summarize(merged);
    assert.ok(s.p50Ms <= s.p95Ms && s.p95Ms <= s.p99Ms && s.p99Ms <= s.maxMs);
  });
});

describe('schedule (coordinated omission)', () => {
  it('fires a stalled backlog with the due times the schedule gave them', () => {
    const at = (us: number): number => GRID_ORIGIN_US + us; // the grid starts there (schedule.ts)
    const stream = new RateStream(10, 0); // 10/s per connection
    const dues: number[] = [];
    stream.run(at(1_000_000), 1, (d) => dues.push(d)); // first message due at t = 1 s
    assert.deepEqual(dues, [at(1_000_000)]);
    // The loop stalls for a second: ten messages were due meanwhile, each 100 ms apart.
    stream.run(at(2_000_000), 1, (d) => dues.push(d));
    assert.equal(dues.length, 11);
    assert.deepEqual(dues.slice(1, 4), [at(1_100_000), at(1_200_000), at(1_300_000)]);
    // More connections: the aggregate rate rises at once.
    const more: number[] = [];
    stream.run(at(2_050_000), 10, (d) => more.push(d));
    assert.deepEqual(more, [at(2_010_000), at(2_020_000), at(2_030_000), at(2_040_000), at(2_050_000)]);
  });
  it('queues due times in order', () => {
    const q = new DueQueue();
    for (let i = 0; i < 3000; i++) q.push(i);
    for (let i = 0; i < 2000; i++) assert.equal(q.shift(), i);
    assert.equal(q.length, 1000);
    assert.equal(q.drain()[0], 2000);
  });
});

describe('wire', () => {
  it('finds every pub marker in a batch without JSON.parse, in any field order', () => {
    const d1 = makeData(PUB_MARK, 3, 7, 1_000_000_123, 1_000_000_456, 'xx');
    const d2 = makeData(PUB_MARK, 4, 0, 5, 6, '');
    const frame = Buffer.from(JSON.stringify({ op: 'batch', msgs: [{ op: 'msg', id: '1', data: d1, pri: 1 }, { data: d2, op: 'msg', from: 'u' }] }));
    assert.ok(isFastPathFrame(frame));
    const seen: Marker[] = [];
    const n = scanPubMarkers(frame, { slot: 0, seq: 0, dueUs: 0, sentUs: 0 }, (m) => seen.push({ ...m }));
    assert.equal(n, 2);
    assert.deepEqual(seen, [
      { slot: 3, seq: 7, dueUs: 1_000_000_123, sentUs: 1_000_000_456 },
      { slot: 4, seq: 0, dueUs: 5, sentUs: 6 },
    ]);
    assert.ok(!isFastPathFrame(Buffer.from(JSON.stringify({ op: 'msg', id: '9', data: d1, ackReq: true }))));
    assert.ok(!isFastPathFrame(Buffer.from('{"op":"ack","ref":"p1","id":"3"}')));
  });
});

describe('delivery accounting', () => {
  const bits = (...seqs: number[]): Uint8Array => {
    const s = new SeqSet(8);
    for (const q of seqs) s.add(q);
    return s.bits;
  };
  it('counts owed, received and lost exactly, honouring membership intervals', () => {
    const w = { startUs: 100, endUs: 1000, fenceUs: 10 };
    const pubs = [
      {
        slot: 1,
        group: 0,
        // seq 0 before the window; 1..4 inside; seq 3 never acknowledged; seq 4 abandoned by a planned close
        dueUs: Float64Array.from([50, 200, 300, 400, 500]),
        sentUs: Float64Array.from([50, 200, 300, 400, 500]),
        ackUs: Float64Array.from([60, 210, 310, Number.NaN, ABANDONED]),
      },
    ];
    const receivers = [
      // member all along, received seq 1 only → seq 2 lost
      { slot: 1, group: 0, intervals: [0, 2000], connectedAtEnd: true, pubSeen: [{ from: 1, bits: bits(0, 1) }], sendSeen: [] },
      // joined at 250: only seq 2 (sent 300) is owed, and it arrived
      { slot: 2, group: 0, intervals: [250, 2000], connectedAtEnd: true, pubSeen: [{ from: 1, bits: bits(2) }], sendSeen: [] },
      // left at 315: seq 2 acked at 310 is within the fence → not owed; seq 1 owed and missing
      { slot: 3, group: 0, intervals: [0, 315], connectedAtEnd: false, pubSeen: [], sendSeen: [{ from: 1, bits: bits(0) }] },
      // another group: owes nothing
      { slot: 4, group: 1, intervals: [0, 2000], connectedAtEnd: true, pubSeen: [], sendSeen: [] },
    ];
    const sends = [{ slot: 1, to: Int32Array.from([4, 3, 4]), dueUs: Float64Array.from([200, 300, 400]), ackUs: Float64Array.from([210, 310, 410]) }];
    const t = computeDelivery([{ pubs, receivers, sends }], w);
    assert.equal(t.pubExpected, 4);
    assert.equal(t.pubReceived, 2);
    assert.equal(t.pubLost, 2);
    assert.equal(t.pubsUnacknowledged, 1);
    assert.equal(t.pubsAbandonedByClose, 1);
    assert.equal(t.sendExpected, 2);
    assert.equal(t.sendReceived, 0);
    assert.equal(t.sendPendingOffline, 1);
  });
  it('SeqSet reports duplicates and grows', () => {
    const s = new SeqSet(8);
    assert.ok(s.add(5));
    assert.ok(!s.add(5));
    assert.ok(s.add(100_000));
  });
});

describe('reports', () => {
  const scenario = (name: string, p99: number): ScenarioReport =>
    ({
      name,
      description: '<b>',
      status: 'ok',
      latency: Object.fromEntries(
        ['fanout', 'fanoutUncorrected', 'send', 'sendUncorrected', 'ping', 'pingUncorrected', 'connect', 'pubAck', 'scheduleLag'].map((k) => [
          k,
          { count: 1, minMs: 1, meanMs: 1, p50Ms: 1, p90Ms: 1, p95Ms: 1, p99Ms: p99, p999Ms: p99, maxMs: p99, stdDevMs: 0 },
        ]),
      ),
      percentileCurves: { fanout: [[0, 1], [50, 1], [99, p99], [100, p99]], fanoutUncorrected: [], send: [], ping: [], connect: [] },
      throughput: { totalDeliveredPerS: 100, pubsPerS: 10 },
      offered: { deliveriesPerS: 100 },
      connections: { successRate: 1, ok: 1, attempts: 1, peak: 1, unexpectedCloses: 0 },
      errors: { rate: 0, count: 0, operations: 1, errFrames: {} },
      delivery: { pubLossRate: 0, pubReceived: 1, pubExpected: 1, pubLost: 0, duplicates: 0, sendReceived: 0, sendExpected: 0, sendLost: 0 },
      send: { supported: true, note: 'supported' },
      generator: { threads: 1, eluPerThread: [0.1], pacing: { blockedPercent: 1, spinPercent: 0.1 }, bottleneck: false, reasons: [] },
      server: { rssStartBytes: null, rssEndBytes: null, rssPeakBytes: null, cpuPercent: null, stats: { available: false, reason: 'HTTP 404', latencies: [], resources: {} } },
      timeSeries: [{ t: 0, p50Ms: 1, p99Ms: p99, maxMs: p99 }, { t: 1, p50Ms: 1, p99Ms: p99, maxMs: p99 }],
      grade: { grade: 'A+', points: 5, reasons: [] },
      notes: [],
    }) as unknown as ScenarioReport;
  const run = (p99: number): RunReport =>
    ({
      format: 'ocs-loadtest/1',
      startedAt: 'a',
      finishedAt: 'b',
      target: { host: 'h', port: 1, launched: false, sendNote: 'supported' },
      machine: { cpus: 2, node: 'v20' },
      scenarios: [scenario('baseline', p99)],
      overall: { grade: 'A+', points: 5, reasons: [] },
    }) as unknown as RunReport;

  it('compare flags a worse P99 and a same P50', () => {
    const { diffs } = diffReports(run(10), run(20));
    assert.equal(diffs.find((d) => d.metric === 'fan-out P99 ms')!.verdict, 'worse');
    assert.equal(diffs.find((d) => d.metric === 'fan-out P50 ms')!.verdict, 'same');
    assert.equal(diffReports(run(20), run(10)).diffs.find((d) => d.metric === 'fan-out P99 ms')!.verdict, 'better');
  });
  it('HTML has the percentile and time plots and escapes text', () => {
    const html = renderHtml(run(10));
    assert.equal(html.match(/<svg /g)?.length, 2);
    assert.ok(html.includes('&lt;b&gt;'));
    assert.ok(!html.includes('<b>'));
    assert.ok(html.includes('not available (HTTP 404)'));
  });
});

describe('command line', () => {
  it('a mistyped option, a missing value or a time past a day is one E_CONFIG line naming it, before anything runs', async () => {
    for (const [args, why] of [
      [['--durations', '5'], /Unknown option '--durations'/],
      [['--warmup', '-1'], /--warmup/],
      [['--duration', '1e300'], /--duration is at most 86400 s/],
      [['--drain', '90000'], /--drain is at most 86400 s/],
      [['--duration', '0'], /--duration must be a positive number/],
    ] as const) {
      await assert.rejects(main([...args]), (err: unknown) => err instanceof OcsError && err.code === 'E_CONFIG' && why.test(err.message), args.join(' '));
    }
  });
});

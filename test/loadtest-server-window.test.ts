/**
 * The server's own latency over a scenario's measured window, beside the load tester's: the
 * server's GET /stats/histograms (merged since-start HDR histograms, rendered on demand), the
 * load tester's subtraction of two of them, and a real run that reports both side by side.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as hdr from 'hdr-histogram-js';
import { newHistogram, recordUs } from '../tools/lib/histogram.js';
import { renderTerminal } from '../tools/loadtest/report-terminal.js';
import { renderHtml } from '../tools/loadtest/report-html.js';
import { runLoadTest } from '../tools/loadtest/runner.js';
import { DEFAULT_SCENARIOS_FILE } from '../tools/loadtest/cli.js';
import { applyOverrides, loadScenarios, selectScenarios } from '../tools/loadtest/scenarios.js';
import { serverWindow, SERVER_LATENCIES, untilNextRender } from '../tools/loadtest/server-window.js';
import { getJson, getText, membersOnEveryShard, type TestClient } from './helpers/client.js';
import { nextMsgs, until } from './helpers/messaging.js';
import { startProcess, testConfig, type ServerProcess } from './helpers/server.js';

const TOKEN = 'window-token';
const PUBS = 25;

function doc(at: string, startedAt: string, pub: number[]): { metrics_at: string; started_at: string; histograms: Record<string, string> } {
  const h = newHistogram();
  for (const us of pub) recordUs(h, us);
  return { metrics_at: at, started_at: startedAt, histograms: { pub: pub.length ? hdr.encodeIntoCompressedBase64(h) : '' } };
}

describe('serverWindow: the end histograms less the start ones', () => {
  test("gives the window's own percentiles, exact to the histograms' precision", () => {
    const before = Array.from({ length: 1000 }, () => 100);
    const during = Array.from({ length: 100 }, (_, i) => 1000 + i * 10);
    const w = serverWindow(doc('t0', 's', before), doc('t1', 's', [...before, ...during]));
    assert.equal(w.available, true);
    assert.deepEqual([w.from, w.to], ['t0', 't1']);
    const pub = w.latencies.pub!;
    assert.equal(pub.count, 100);
    // 1000..1990 µs: the median is about 1.49 ms, P99 about 1.98 ms (HDR: within 0.1%).
    assert.ok(Math.abs(pub.p50Ms - 1.49) <= 0.0025, `P50 ${pub.p50Ms}`);
    assert.ok(Math.abs(pub.p99Ms - 1.98) <= 0.0025, `P99 ${pub.p99Ms}`);
    for (const name of SERVER_LATENCIES.filter((n) => n !== 'pub')) assert.equal(w.latencies[name]!.count, 0, name);
  });

  test('is not available across a restart, with fewer samples at the end, or without a mark', () => {
    assert.match(serverWindow(doc('t0', 'a', [5]), doc('t1', 'b', [5, 6])).reason!, /restarted/);
    assert.match(serverWindow(doc('t0', 's', [5, 6]), doc('t1', 's', [5])).reason!, /lost samples/);
    assert.equal(serverWindow('the server has no GET /stats/histograms', doc('t1', 's', [])).reason, 'the server has no GET /stats/histograms');
  });
});

describe('a mark waits for the next render instead of polling through the interval', () => {
  const at = '2026-11-30T03:00:00.000Z';
  const t = Date.parse(at);
  test('reads again just after the render due one interval after the one it saw', () => {
    assert.equal(untilNextRender({ metrics_at: at, interval_s: 1 }, t + 200), 850);
  });
  test('polls (every 100 ms) a server that does not say its interval, or whose render is due already', () => {
    assert.equal(untilNextRender({ metrics_at: at }, t), 100);
    assert.equal(untilNextRender({ metrics_at: at, interval_s: 1 }, t + 5_000), 100);
  });
  test("waits at most one interval, whatever the server's clock says, and at most 15 s", () => {
    assert.equal(untilNextRender({ metrics_at: at, interval_s: 1 }, t - 60_000), 1_000);
    assert.equal(untilNextRender({ metrics_at: 'not a time', interval_s: 1 }, t), 100);
    assert.equal(untilNextRender({ metrics_at: at, interval_s: 1e9 }, t), 15_000, 'nor longer than a mark waits in all');
  });
});

describe('GET /stats/histograms and the load tester against a 2-shard server', () => {
  let server: ServerProcess;
  const clients: TestClient[] = [];
  before(async () => {
    server = await startProcess(testConfig({ websocket: { monitoring: { metrics_collection_interval: 0.1, token: TOKEN } } }));
  });
  after(async () => {
    for (const client of clients) client.close();
    await server.stop();
  });

  test('is rendered when asked for (the request waits for it), needs the token, and holds the merged since-start histograms /stats summarises', async () => {
    assert.equal((await getText(server.port, '/stats/histograms')).status, 401);
    const first = await getJson(server.port, '/stats/histograms', 'GET', TOKEN);
    assert.equal(first.status, 200, 'nobody had asked for it before: rendered for this request, which waited for it');
    const members = await membersOnEveryShard(server.port, 2, 'room', 'member');
    clients.push(...members);
    for (let i = 0; i < PUBS; i++) members[0]!.send({ op: 'pub', group: 'room', data: { i } });
    for (const client of members) await nextMsgs(client, PUBS);
    const body = await until(async () => {
      const { status, body } = await getJson(server.port, '/stats/histograms', 'GET', TOKEN);
      if (status !== 200) return undefined;
      const encoded = (body.histograms as Record<string, string>).pub;
      // '' while the server has measured none.
      return encoded && hdr.decodeFromCompressedBase64(encoded, 64, false).totalCount === 2 * PUBS ? body : undefined;
    }, 'both shards measuring every pub');
    assert.equal(body.unit, 'us');
    assert.equal(body.interval_s, 0.1, 'the metrics interval, so that a reader knows when the next render is due');
    assert.deepEqual(Object.keys(body.histograms as object), [...SERVER_LATENCIES]);
    // The histograms are read as they stand when rendered; /stats's figures are those of the
    // last interval, which takes in the same reports by the next one.
    await until(async () => {
      const stats = (await getJson(server.port, '/stats', 'GET', TOKEN)).body as { latency: { pub: { since_start: { count: number } } } };
      return stats.latency.pub.since_start.count === 2 * PUBS || undefined;
    }, '/stats summarising every pub');
  });

  test("a scenario's report has the server's pub latency over its measured window beside its own fan-out, in every format", async () => {
    const [baseline] = selectScenarios(loadScenarios(DEFAULT_SCENARIOS_FILE), { names: ['baseline'] }).map((s) =>
      applyOverrides(s, { durationS: 3, warmupS: 1, drainS: 1, connections: 20 }),
    );
    const report = await runLoadTest({ scenarios: [baseline!], host: '127.0.0.1', port: server.port, threads: 1, monitoringToken: TOKEN });
    const s = report.scenarios[0]!;
    assert.equal(s.status, 'ok', s.error);
    const w = s.server.window;
    assert.equal(w.available, true, w.reason);
    assert.ok(Date.parse(w.to!) > Date.parse(w.from!));
    const pub = w.latencies.pub!;
    assert.ok(pub.count > 0, 'the server measured pubs in the window');
    // The server's part of a delivery is a lower bound of the whole: at the median, clearly.
    assert.ok(pub.p50Ms <= s.latency.fanout.p50Ms, `server pub P50 ${pub.p50Ms} ms <= load tester fan-out P50 ${s.latency.fanout.p50Ms} ms`);
    const text = renderTerminal(report);
    assert.match(text, /load tester +pub fan-out \(corrected\) +[0-9.]+/);
    assert.match(text, /server +pub: frame in → handed to uWS, each shard +[0-9.]+/);
    assert.match(text, /server's window .* → .*: GET \/stats\/histograms at the start and the end of the measured window/);
    const html = renderHtml(report);
    assert.ok(html.includes('<table class="server-window">') && html.includes('pub: frame in → handed to uWS, each shard'));
  });

  test('without the monitoring token the report says why the window is missing', async () => {
    const [baseline] = selectScenarios(loadScenarios(DEFAULT_SCENARIOS_FILE), { names: ['baseline'] }).map((s) =>
      applyOverrides(s, { durationS: 1, warmupS: 0, drainS: 0.5, connections: 5 }),
    );
    const report = await runLoadTest({ scenarios: [baseline!], host: '127.0.0.1', port: server.port, threads: 1 });
    const w = report.scenarios[0]!.server.window;
    assert.equal(w.available, false);
    assert.match(w.reason!, /needs the monitoring token/);
    assert.match(renderTerminal(report), /server's own latency over the window: not available \(GET \/stats\/histograms needs the monitoring token/);
  });
});

/**
 * GET /dashboard in a real browser: Debian's chromium driven by playwright-core, against a real
 * 2-shard server carrying real pubs across its shards. The page draws from /stats and /alerts
 * and exposes what it drew (data-last, data-series, ...); the test compares that with the
 * /stats documents it reads itself, keyed by the interval they describe (metrics_at), and
 * saves a screenshot: to docs/dashboard.png (shown in the README) with UPDATE_SCREENSHOT=1,
 * else to a temp file, so that `npm test` leaves the work tree as it found it.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { loadDashboard } from '../src/metrics/dashboard.js';
import { getJson, getText, member, membersOnEveryShard, type TestClient } from './helpers/client.js';
import { until } from './helpers/messaging.js';
import { startProcess, testConfig, type ServerProcess } from './helpers/server.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const SCREENSHOT =
  process.env.UPDATE_SCREENSHOT === '1' ? fileURLToPath(new URL('../../docs/dashboard.png', import.meta.url)) : join(tmpdir(), `ocs-dashboard-${process.pid}.png`);
const TOKEN = 'dashboard-token';
const INTERVAL_S = 0.25;
const PUBS_PER_TICK = 4;
const TICK_MS = 20;
/** Connections beside the first member on each shard, for a fuller picture. */
const MORE_MEMBERS = 6;

const skip = existsSync(CHROMIUM) ? false : `SKIPPED: ${CHROMIUM} is not installed (apt-get install -y chromium); the dashboard was not tested in a browser`;
if (skip) process.stderr.write(`\n*** dashboard.test: ${skip} ***\n\n`);

/** Parsed JSON as the page and the server give it (checked by the assertions). */
type Json = Record<string, any>;

async function stats(port: number): Promise<Json> {
  const { status, body } = await getJson(port, '/stats', 'GET', TOKEN);
  assert.equal(status, 200);
  return body;
}

async function data(page: Page, selector: string, attribute: string): Promise<Json | null> {
  const text = await page.getAttribute(selector, attribute);
  return text === null ? null : (JSON.parse(text) as Json);
}

describe('GET /dashboard in chromium, with pubs across 2 shards', { skip }, () => {
  let server: ServerProcess;
  let context: BrowserContext;
  let page: Page;
  let profile: string;
  const clients: TestClient[] = [];
  const pageErrors: string[] = [];
  /** Every /stats the test read, by the interval it describes. */
  const seen = new Map<string, Json[]>();
  let pubs = 0;
  let traffic: NodeJS.Timeout | null = null;
  let watcher: NodeJS.Timeout | null = null;

  before(async () => {
    server = await startProcess(
      testConfig({
        websocket: {
          server: { ping_interval: 0.5 },
          // A P95 over 1 µs raises the pub latency alert while pubs flow; it clears when they stop.
          monitoring: { metrics_collection_interval: INTERVAL_S, token: TOKEN, alerts: { latency_p95_ms: 0.001, min_samples: 1 } },
        },
      }),
    );
    const members = await membersOnEveryShard(server.port, 2, 'room', 'member');
    for (let i = 0; i < MORE_MEMBERS; i++) members.push(await member(server.port, `more${i}`, ['room']));
    clients.push(...members);
    // Pubs from members on both shards, each delivered to every member on both shards.
    let turn = 0;
    traffic = setInterval(() => {
      for (let i = 0; i < PUBS_PER_TICK; i++) {
        members[turn++ % members.length]!.send({ op: 'pub', group: 'room', data: { n: pubs++ } });
      }
    }, TICK_MS);
    watcher = setInterval(() => {
      stats(server.port).then(
        (s) => seen.set(s.metrics_at, [...(seen.get(s.metrics_at) ?? []), s]),
        () => undefined,
      );
    }, 40);
    profile = mkdtempSync(join(tmpdir(), 'ocs-chromium-'));
    context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: CHROMIUM_ARGS, viewport: { width: 1400, height: 1050 } });
    page = await context.newPage();
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error') pageErrors.push(msg.text());
    });
  });
  after(async () => {
    if (traffic) clearInterval(traffic);
    if (watcher) clearInterval(watcher);
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    for (const client of clients) client.close();
    await server?.stop();
  });

  test('the page is served from memory without the token, with a CSP that allows only its own script and style', async () => {
    const { status, text, contentType } = await getText(server.port, '/dashboard');
    assert.equal(status, 200);
    assert.equal(contentType, 'text/html; charset=utf-8');
    assert.match(text, /<svg/);
    const response = await page.goto(`http://127.0.0.1:${server.port}/dashboard?token=${TOKEN}`);
    assert.match(response!.headers()['content-security-policy']!, /script-src 'sha256-[^']+'; style-src 'sha256-[^']+'; connect-src 'self'/);
    assert.ok(!page.url().includes(TOKEN), `the token is taken out of the address bar: ${page.url()}`);
  });

  test('while pubs flow, the charts draw the latency percentiles, rates, connections and per-shard load that /stats served', async () => {
    // Polled from here: the page's CSP rightly refuses the eval that waitForFunction would need.
    await until(async () => (Number(await page.getAttribute('#throughput', 'data-points')) >= 12 ? true : undefined), '12 points drawn', 30_000);
    const matched = (series: Json[], compare: (point: Json, served: Json) => boolean): number =>
      series.filter((point) => (seen.get(point.at) ?? []).some((served) => compare(point, served))).length;

    const latency = (await data(page, '#latency', 'data-series'))!.filter((p: Json) => p.count > 0);
    assert.ok(latency.length >= 3, `latency points with samples: ${JSON.stringify(latency)}`);
    const sameLatency = matched(latency, (p, s) => {
      const l = s.latency.pub.last_interval;
      return p.p50_ms === l.p50_ms && p.p95_ms === l.p95_ms && p.p99_ms === l.p99_ms && p.count === l.count;
    });
    assert.ok(sameLatency >= 3, `${sameLatency} of ${latency.length} latency points are the pub P50/P95/P99 /stats served for their interval`);
    for (const p of latency) assert.ok(p.p50_ms <= p.p95_ms && p.p95_ms <= p.p99_ms, JSON.stringify(p));

    const rates = (await data(page, '#throughput', 'data-series'))!.filter((p: Json) => p.pubs > 0);
    const sameRates = matched(rates, (p, s) => p.pubs === s.rates_per_s.pubs && p.deliveries === s.rates_per_s.deliveries && p.frames_in === s.rates_per_s.frames_in);
    assert.ok(sameRates >= 3, `${sameRates} of ${rates.length} rate points are the rates /stats served for their interval`);
    // Every pub reaches every member: deliveries per second are members times pubs per second.
    for (const p of rates.slice(-3)) assert.ok(p.deliveries > p.pubs, JSON.stringify(p));

    const connections = (await data(page, '#connections', 'data-last'))!;
    const served = await stats(server.port);
    assert.equal(connections.total, clients.length);
    assert.deepEqual([connections.shard0, connections.shard1], served.shards.map((s: Json) => s.connections));

    // The store's file system, as /stats has it (other processes write to it too: close, not equal).
    const shown = Number(await page.getAttribute('#tile-disk', 'data-used-ratio'));
    assert.ok(Math.abs(shown - (served.store_disk as Json).fs_used_ratio) < 0.01, `disk tile ${shown} vs ${JSON.stringify(served.store_disk)}`);
    assert.match((await page.textContent('#tile-disk'))!, /^[\d.,]+ %$/);

    const shards = (await data(page, '#shards', 'data-last'))!;
    assert.deepEqual(shards.shards.map((s: Json) => s.connections), served.shards.map((s: Json) => s.connections));
    for (const s of shards.shards) assert.ok(s.deliveries_per_s > 0, `shard ${s.shard} delivers: ${JSON.stringify(shards)}`);
    // The page may have drawn an interval the watcher (every 40 ms) has not read yet.
    await until(() => (seen.has(shards.at) ? true : undefined), `the watcher read /stats of ${shards.at}`);
    const utilization = seen.get(shards.at)!.map((st) => st.resources.threads.filter((t: Json) => t.thread !== 'primary').map((t: Json) => t.event_loop_utilization));
    assert.ok(
      utilization.some((u) => JSON.stringify(u) === JSON.stringify(shards.shards.map((s: Json) => s.event_loop_utilization))),
      `per-shard event-loop utilisation ${JSON.stringify(shards.shards)} is what /stats served at ${shards.at}: ${JSON.stringify(utilization)}`,
    );
  });

  test('an alert raised by the server shows as active, and the screenshot is saved', async () => {
    await until(async () => ((await data(page, '#alerts', 'data-active'))?.includes('pub_latency_p95') ? true : undefined), 'pub_latency_p95 active on the page');
    const { body } = await getJson(server.port, '/alerts', 'GET', TOKEN);
    assert.ok((body.active as Json[]).some((a) => a.alert === 'pub_latency_p95'));
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    assert.ok(existsSync(SCREENSHOT));
  });

  test('once the pubs stop, the since-start percentiles and the alert history on the page are those of /stats and /alerts', async () => {
    clearInterval(traffic!);
    traffic = null;
    const sent = pubs;
    // Each pub is measured once on each of the two shards (both have subscribers).
    const settled = await until(async () => {
      const s = await stats(server.port);
      return s.latency.pub.since_start.count === 2 * sent ? s : undefined;
    }, `${2 * sent} pub latencies since start`);
    const pub = settled.latency.pub.since_start;
    const shown = await until(async () => {
      const d = await data(page, '#latency-since-start', 'data-since-start');
      return d?.count === 2 * sent ? d : undefined;
    }, 'the page showing every pub since start');
    assert.deepEqual(shown, { latency: 'pub', p50_ms: pub.p50_ms, p95_ms: pub.p95_ms, p99_ms: pub.p99_ms, count: pub.count });
    // As the page writes numbers: 3 decimals below 10, 1 above.
    const written = pub.p99_ms.toLocaleString('en-US', { maximumFractionDigits: pub.p99_ms < 10 ? 3 : 1 });
    assert.ok((await page.textContent('#latency-since-start'))!.includes(`P99 ${written} `));

    const recent = await until(async () => {
      const { body } = await getJson(server.port, '/alerts', 'GET', TOKEN);
      const events = (body.recent as Json[]).map((e) => ({ alert: e.alert, state: e.state, at: e.at }));
      // The last change: an interval whose shard reports came late may have cleared and raised it while pubs flowed.
      return events.filter((e) => e.alert === 'pub_latency_p95').at(-1)?.state === 'cleared' ? events : undefined;
    }, 'the pub latency alert cleared');
    await until(async () => (JSON.stringify(await data(page, '#alerts', 'data-recent')) === JSON.stringify(recent) ? true : undefined), 'the page showing the same alert history');
    assert.deepEqual(await data(page, '#alerts', 'data-active'), []);
  });

  test('without ?token= the page asks for it: dismissed, it says it is unauthorized; given, it goes live', async () => {
    const second = await context.newPage();
    try {
      const answers = [null, TOKEN];
      second.on('dialog', (dialog) => {
        const answer = answers.shift();
        void (answer ? dialog.accept(answer) : dialog.dismiss());
      });
      await second.goto(`http://127.0.0.1:${server.port}/dashboard`);
      await second.waitForSelector('#state[data-state="error"]');
      assert.match((await second.textContent('#state'))!, /unauthorized/);
      await second.click('#state button');
      await second.waitForSelector('#state[data-state="live"]');
      assert.equal(answers.length, 0);
    } finally {
      await second.close();
    }
    assert.deepEqual(pageErrors, [], 'no script error and no CSP violation on the page');
  });
});

describe('GET /dashboard in chromium, metrics collection off', { skip }, () => {
  test('the server measures no rates (rates_per_s null): the tiles show the totals\' growth between reads, not 0', async () => {
    const server = await startProcess(testConfig({ websocket: { server: { shards: 1 }, monitoring: { enable_metrics_collection: false } } }));
    const profile = mkdtempSync(join(tmpdir(), 'ocs-chromium-'));
    const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    const members = [await member(server.port, 'a', ['room']), await member(server.port, 'b', ['room'])];
    const traffic = setInterval(() => members[0]!.send({ op: 'pub', group: 'room', data: 1 }), 10);
    const started = Date.now();
    const delivered = (): number => members.reduce((sum, client) => sum + client.frames.filter((f) => f.op === 'msg').length, 0);
    try {
      assert.equal((await getJson(server.port, '/stats')).body.rates_per_s, null);
      const page = await context.newPage();
      await page.goto(`http://127.0.0.1:${server.port}/dashboard`);
      const shown = await until(async () => {
        const text = (await page.textContent('#tile-deliveries')) ?? '';
        return /^[\d,.]+$/.test(text) && Number(text.replaceAll(',', '')) > 0 ? text : undefined;
      }, 'a deliveries rate above 0 on the page');
      // The rate the members saw (about 200 a second, fewer when this machine is busy and the
      // timer lags): the page's is of the same order, not a count or a rate of something else.
      const seen = delivered() / ((Date.now() - started) / 1000);
      const rate = Number(shown.replaceAll(',', ''));
      assert.ok(rate > seen / 3 && rate < seen * 3, `page ${shown}, members ${seen.toFixed(1)} a second`);
    } finally {
      clearInterval(traffic);
      for (const client of members) client.close();
      await context.close();
      rmSync(profile, { recursive: true, force: true });
      await server.stop();
    }
  });
});

describe('the dashboard page file', () => {
  test('a page file that cannot be read is an error naming it, for a coded 500 instead of a shard that fails to start', () => {
    const page = loadDashboard('/nonexistent/dashboard.html');
    assert.ok(page instanceof Error);
    assert.match(page.message, /cannot read \/nonexistent\/dashboard\.html/);
  });

  test('the shipped page loads with a hash per inline script and style', () => {
    const page = loadDashboard();
    assert.ok(!(page instanceof Error), String(page));
    assert.match(page.csp, /script-src 'sha256-[A-Za-z0-9+/]+=*'; style-src 'sha256-[A-Za-z0-9+/]+=*';/);
  });
});

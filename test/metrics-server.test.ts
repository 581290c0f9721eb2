import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { statfsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { getJson, getText, member, membersOnEveryShard, type TestClient } from './helpers/client.js';
import { nextMsgs, until } from './helpers/messaging.js';
import { parseExposition, promtoolCheck, scrape, total, untilMetricIs, type Sample } from './helpers/prometheus.js';
import { startInProcess, startProcess, testConfig, type ServerProcess } from './helpers/server.js';

const TOKEN = 'metrics-token';
const PUBS = 30;
const SENDS = 5;

const metrics = (port: number): Promise<Sample[]> => scrape(port, TOKEN);
const untilMetric = (port: number, name: string, expected: number, labels: Record<string, string> = {}): Promise<Sample[]> => untilMetricIs(port, name, expected, labels, TOKEN);

function logged(server: ServerProcess, msg: string, alert: string): Array<Record<string, unknown>> {
  return server.logs.filter((l) => l.msg === msg && l.alert === alert);
}

describe('a server measuring itself (2 shards)', () => {
  let server: ServerProcess;
  const clients: TestClient[] = [];
  let dataDir = '';
  before(async () => {
    const config = testConfig({
      websocket: {
        server: { ping_interval: 0.2 },
        monitoring: { metrics_collection_interval: 0.2, log_interval: 0.5, token: TOKEN, alerts: { latency_p95_ms: 0.001, min_samples: 1, queue_depth: 2, disk_used_percent: 0.01 } },
      },
    });
    dataDir = (config.store as { data_dir: string }).data_dir;
    server = await startProcess(config);
  });
  after(async () => {
    for (const client of clients) client.close();
    await server.stop();
  });

  test('/metrics, /stats and /alerts need the monitoring token; /health does not', async () => {
    for (const path of ['/metrics', '/stats', '/alerts']) {
      assert.equal((await getText(server.port, path)).status, 401, path);
      assert.equal((await getText(server.port, path, 'GET', 'wrong')).status, 401, path);
    }
    assert.equal((await getText(server.port, '/health')).status, 200);
    const { status, contentType } = await getText(server.port, '/metrics', 'GET', TOKEN);
    assert.equal(status, 200);
    // The scheme is case-insensitive (RFC 9110): some clients send `bearer`.
    assert.equal((await fetch(`http://127.0.0.1:${server.port}/stats`, { headers: { authorization: `bearer ${TOKEN}` } })).status, 200);
    assert.equal(contentType, 'text/plain; version=0.0.4; charset=utf-8');
  });

  test('pubs across shards: each is measured once on each shard with subscribers, and /metrics and /stats show it', async () => {
    const members = await membersOnEveryShard(server.port, 2, 'room', 'member');
    clients.push(...members);
    const sender = members[0]!;
    for (let i = 0; i < PUBS; i++) sender.send({ op: 'pub', group: 'room', data: { i } });
    for (const client of members) assert.equal((await nextMsgs(client, PUBS)).length, PUBS);
    const samples = await untilMetric(server.port, 'ocs_pub_latency_seconds_count', 2 * PUBS);
    assert.equal(total(samples, 'ocs_pub_latency_seconds_bucket', { le: '+Inf' }), 2 * PUBS);
    assert.equal(total(samples, 'ocs_pubs_total'), PUBS);
    assert.equal(total(samples, 'ocs_deliveries_total'), PUBS * members.length);
    assert.equal(total(samples, 'ocs_connections'), members.length);
    assert.ok(total(samples, 'ocs_frames_received_total') >= PUBS + members.length);
    assert.ok(total(samples, 'ocs_sent_bytes_total') > 0);

    const { status, body } = await getJson(server.port, '/stats', 'GET', TOKEN);
    assert.equal(status, 200);
    assert.equal((body.totals as Record<string, number>).pubs, PUBS, 'the live counters stay');
    const latency = body.latency as Record<string, { since_start: Record<string, number> }> & { threads: Array<Record<string, unknown>> };
    const pub = latency.pub!.since_start;
    assert.equal(pub.count, 2 * PUBS);
    assert.ok(pub.p50_ms! > 0 && pub.p50_ms! <= pub.p99_ms! && pub.p99_ms! <= pub.max_ms!, JSON.stringify(pub));
    assert.ok(pub.p99_ms! < 5000, `P99 ${pub.p99_ms} ms`);
    const shards = latency.threads.filter((t) => t.thread !== 'primary');
    assert.deepEqual(
      shards.map((t) => [t.thread, (t.pub as { since_start: { count: number } }).since_start.count]),
      [['shard0', PUBS], ['shard1', PUBS]],
    );
    assert.equal(body.connections_peak, members.length);
  });

  test('send, delivery and ack: the send and ack latencies count each message once', async () => {
    const alice = await member(server.port, 'alice');
    const bob = await member(server.port, 'bob');
    clients.push(alice, bob);
    for (let i = 0; i < SENDS; i++) alice.send({ op: 'send', to: 'bob', data: { i }, ref: `s${i}` });
    for (const msg of await nextMsgs(bob, SENDS)) bob.send({ op: 'ack', id: msg.id });
    await untilMetric(server.port, 'ocs_send_latency_seconds_count', SENDS);
    const samples = await untilMetric(server.port, 'ocs_ack_latency_seconds_count', SENDS);
    assert.equal(total(samples, 'ocs_messages_acked_total'), SENDS);
    assert.equal(total(samples, 'ocs_messages_stored'), 0);
  });

  test("the server's pings, every thread's event-loop delay and heap are measured", async () => {
    const samples = await until(async () => {
      const s = await metrics(server.port);
      return total(s, 'ocs_ping_rtt_seconds_count') > 0 ? s : undefined;
    }, 'a ping round trip');
    assert.ok(total(samples, 'ocs_event_loop_delay_seconds_count') > 0);
    const threads = samples.filter((s) => s.name === 'ocs_thread_heap_used_bytes').map((s) => s.labels.thread);
    assert.deepEqual(threads, ['primary', 'shard0', 'shard1']);
    assert.ok(total(samples, 'ocs_process_resident_memory_bytes') > 0);
    // Each thread's own CPU (Linux): every one has run, and together they are part of the process's.
    const cpu = samples.filter((s) => s.name === 'ocs_thread_cpu_seconds_total');
    assert.deepEqual(cpu.map((s) => s.labels.thread), ['primary', 'shard0', 'shard1']);
    assert.ok(cpu.every((s) => s.value > 0), JSON.stringify(cpu));
    const sum = cpu.reduce((all, s) => all + s.value, 0);
    assert.ok(sum <= total(samples, 'ocs_process_cpu_seconds_total') + 0.05, `threads ${sum} s within the process's`);
  });

  test('errors are counted under their own code', async () => {
    const carl = await member(server.port, 'carl');
    clients.push(carl);
    carl.send({ op: 'ack', id: 'no-such-id' });
    assert.equal((await carl.next((f) => f.op === 'err')).code, 'E_UNKNOWN_ID');
    carl.sendRaw('not json');
    assert.equal((await carl.next((f) => f.op === 'err')).code, 'E_BAD_FRAME');
    const samples = await untilMetric(server.port, 'ocs_errors_total', 1, { code: 'E_UNKNOWN_ID' });
    assert.equal(total(samples, 'ocs_errors_total', { code: 'E_BAD_FRAME' }), 1);
  });

  test('a latency alert is raised and cleared in the log with its value, and listed at /alerts', async () => {
    // P95 over 0.001 ms: raised by the pubs above; cleared once intervals pass without any.
    await until(() => (logged(server, 'alert cleared', 'pub_latency_p95').length > 0 ? true : undefined), 'the pub latency alert cleared');
    const [raised] = logged(server, 'alert raised', 'pub_latency_p95');
    assert.ok((raised!.value as number) > 0.001);
    assert.equal(raised!.threshold, 0.001);
    // /alerts is rendered just after the log line is written: it may lag it by a moment.
    const recent = await until(async () => {
      const { body } = await getJson(server.port, '/alerts', 'GET', TOKEN);
      const events = (body.recent as Array<Record<string, unknown>>).filter((e) => e.alert === 'pub_latency_p95');
      return events.length >= 2 ? events : undefined;
    }, 'the raise and the clear at /alerts');
    assert.deepEqual(recent.slice(0, 2).map((e) => e.state), ['raised', 'cleared']);
    assert.ok(total(await metrics(server.port), 'ocs_alerts_raised_total', { alert: 'pub_latency_p95' }) >= 1);
  });

  test('the queue-depth alert rises with messages stored for an offline user and clears once they are acknowledged', async () => {
    // The sends to bob above may have raised it already: they were stored until bob acknowledged them.
    const raisedBefore = logged(server, 'alert raised', 'queue_depth').length;
    const clearedBefore = logged(server, 'alert cleared', 'queue_depth').length;
    const sender = await member(server.port, 'sender');
    clients.push(sender);
    for (let i = 0; i < 3; i++) {
      sender.send({ op: 'send', to: 'dora', data: { i }, ref: `q${i}` });
      await sender.next((f) => f.op === 'ack' && f.ref === `q${i}`);
    }
    const raised = await until(() => logged(server, 'alert raised', 'queue_depth')[raisedBefore], 'the queue depth alert');
    assert.equal(raised.value, 3);
    await until(async () => {
      const { body } = await getJson(server.port, '/alerts', 'GET', TOKEN);
      return (body.active as Array<Record<string, unknown>>).some((a) => a.alert === 'queue_depth' && a.value === 3) ? true : undefined;
    }, 'the queue depth alert active at /alerts');
    const dora = await member(server.port, 'dora');
    clients.push(dora);
    for (const msg of await nextMsgs(dora, 3)) dora.send({ op: 'ack', id: msg.id });
    await until(() => logged(server, 'alert cleared', 'queue_depth')[clearedBefore], 'the queue depth alert cleared');
    assert.equal(logged(server, 'alert raised', 'queue_depth').length, raisedBefore + 1, 'raised once, not once per interval');
  });

  test('the stats log line carries the merged P50/P95/P99 and the throughput', async () => {
    const line = await until(() => server.logs.find((l) => l.msg === 'stats' && ((l.latency_ms as Record<string, { count: number }>).pub?.count ?? 0) > 0), 'a stats line with pub latencies');
    const pub = (line.latency_ms as Record<string, Record<string, number>>).pub!;
    assert.ok(pub.p50! > 0 && pub.p50! <= pub.p95! && pub.p95! <= pub.p99!, JSON.stringify(pub));
    assert.equal(typeof line.pubs_per_s, 'number');
    assert.equal(typeof line.deliveries_per_s, 'number');
  });

  test("the store's disk in /metrics and /stats: data.mdb, the space held past it, the file system; over disk_used_percent, the disk alert", async () => {
    const samples = await metrics(server.port);
    const fs = statfsSync(dataDir);
    // The file may have grown by a lease write since the scrape.
    assert.ok(Math.abs(total(samples, 'ocs_store_file_bytes') - statSync(join(dataDir, 'data.mdb')).size) <= 1024 * 1024);
    assert.equal(total(samples, 'ocs_store_fs_size_bytes'), fs.blocks * fs.bsize);
    const free = total(samples, 'ocs_store_fs_free_bytes');
    assert.ok(Math.abs(free - fs.bavail * fs.bsize) < 64 * 1024 * 1024, `free ${free} vs statfs ${fs.bavail * fs.bsize}`);
    // Where fallocate exists (util-linux): 1 MiB held past the file at open, topped up when half is promised.
    if (spawnSync('sh', ['-c', 'command -v fallocate']).status === 0) assert.ok(total(samples, 'ocs_store_reserved_bytes') >= 512 * 1024);
    const disk = (await getJson(server.port, '/stats', 'GET', TOKEN)).body.store_disk as Record<string, number>;
    assert.deepEqual(Object.keys(disk), ['file_bytes', 'reserved_bytes', 'fs_size_bytes', 'fs_free_bytes', 'fs_used_ratio']);
    assert.ok(disk.fs_used_ratio! > 0 && disk.fs_used_ratio! < 1, JSON.stringify(disk));
    const raised = await until(() => logged(server, 'alert raised', 'disk')[0], 'the disk alert');
    assert.equal(raised.unit, '%');
    assert.ok(Math.abs(Number(raised.value) - disk.fs_used_ratio! * 100) < 1, `${String(raised.value)} vs ${disk.fs_used_ratio}`);
  });

  test('without websocket.history, /stats has history: null and /metrics no ocs_history_ family', async () => {
    assert.equal((await getJson(server.port, '/stats', 'GET', TOKEN)).body.history, null);
    assert.deepEqual((await metrics(server.port)).filter((s) => s.name.startsWith('ocs_history_')), []);
  });

  test('documents are rendered when asked for: requests at once share one render of the last interval, a later one gets a later interval', async () => {
    const uptime = (text: string): number => parseExposition(text).samples.find((s) => s.name === 'ocs_uptime_seconds')!.value;
    const burst = await Promise.all(Array.from({ length: 40 }, () => getText(server.port, '/metrics', 'GET', TOKEN)));
    assert.deepEqual(new Set(burst.map((r) => r.status)), new Set([200]));
    const first = Math.min(...burst.map((r) => uptime(r.text)));
    await new Promise((resolve) => setTimeout(resolve, 600)); // three intervals
    const later = uptime((await getText(server.port, '/metrics', 'GET', TOKEN)).text);
    assert.ok(later >= first + 0.4, `rendered from an interval at least 0.4 s later (${first} s, then ${later} s)`);
  });

  test('the live exposition is accepted by promtool', async (t) => {
    const { text } = await getText(server.port, '/metrics', 'GET', TOKEN);
    const complaints = promtoolCheck(text);
    if (complaints === null) return t.skip('promtool is not installed (Debian package prometheus)');
    assert.equal(complaints, '');
  });
});

describe('a server with metrics collection off', () => {
  test('keeps its live counters in /stats, and /metrics says it is off', async () => {
    const server = await startInProcess({ websocket: { monitoring: { enable_metrics_collection: false } } });
    try {
      const client = await member(server.port, 'solo', ['alone']);
      client.send({ op: 'pub', group: 'alone', data: 1 });
      await client.next((f) => f.op === 'msg');
      client.close();
      const { status, body } = await getJson(server.port, '/stats');
      assert.equal(status, 200);
      assert.equal((body.totals as Record<string, number>).pubs, 1);
      assert.equal(body.latency, undefined);
      const metricsAnswer = await getJson(server.port, '/metrics');
      assert.equal(metricsAnswer.status, 404);
      assert.equal(metricsAnswer.body.code, 'not_found');
    } finally {
      await server.close();
    }
  });
});

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { overviewColumns } from '../src/metrics/overview.js';
import { csvLine } from '../src/metrics/overview-format.js';
import { getJson, member, membersOnEveryShard, type TestClient } from './helpers/client.js';
import { nextMsgs, until } from './helpers/messaging.js';
import { runCommand, startProcess, testConfig, type CommandResult, type ServerProcess } from './helpers/server.js';

const REPORT = fileURLToPath(new URL('../scripts/report.js', import.meta.url));
const TOKEN = 'report-token';
const PUBS = 20;
const EXPORT_MAX_BYTES = 8192;

/** Runs the built report script (what `npm run report` runs) to completion. */
function report(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CommandResult> {
  return runCommand(process.execPath, [REPORT, ...args], { env });
}

type Stats = Record<string, unknown> & { latency: Record<string, { since_start: Record<string, number> }> };

async function stats(port: number): Promise<Stats> {
  const { status, body } = await getJson(port, '/stats', 'GET', TOKEN);
  assert.equal(status, 200);
  return body as Stats;
}

/** JSON lines of a file (and of its rotated copies FILE.1 .. FILE.n, oldest first). */
function exported(file: string, keep: number): Array<Record<string, unknown>> {
  const files = [...Array.from({ length: keep }, (_, i) => `${file}.${keep - i}`), file].filter((f) => existsSync(f));
  return files.flatMap((f) =>
    readFileSync(f, 'utf8')
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>),
  );
}

describe('npm run report and monitoring.export_file, against a 2-shard server', () => {
  let server: ServerProcess;
  let url: string;
  const exportDir = mkdtempSync(join(tmpdir(), 'ocs-export-'));
  const exportFile = join(exportDir, 'overview.jsonl');
  const clients: TestClient[] = [];
  let settled: Stats;

  before(async () => {
    server = await startProcess(
      testConfig({
        websocket: {
          monitoring: {
            metrics_collection_interval: 0.1,
            token: TOKEN,
            alerts: { queue_depth: 1 },
            export_file: exportFile,
            export_max_bytes: EXPORT_MAX_BYTES,
            export_keep: 2,
          },
        },
      }),
    );
    url = `http://127.0.0.1:${server.port}`;
    // Pubs across both shards, and two messages stored for a user who is not connected
    // (queue depth 2 > 1: an alert that stays active).
    const members = await membersOnEveryShard(server.port, 2, 'room', 'member');
    clients.push(...members);
    for (let i = 0; i < PUBS; i++) members[0]!.send({ op: 'pub', group: 'room', data: { i } });
    for (const client of members) await nextMsgs(client, PUBS);
    const alice = await member(server.port, 'alice');
    clients.push(alice);
    for (let i = 0; i < 2; i++) {
      alice.send({ op: 'send', to: 'offline-bob', data: { i }, ref: `s${i}` });
      await alice.next((f) => f.op === 'ack' && f.ref === `s${i}`);
    }
    // Nothing moves from here on: the since-start figures stay what they are.
    settled = await until(async () => {
      const s = await stats(server.port);
      const active = (s.alerts as { active: Array<{ alert: string }> }).active;
      return s.latency.pub!.since_start.count === 2 * PUBS && active.some((a) => a.alert === 'queue_depth') ? s : undefined;
    }, 'the pubs measured and the queue-depth alert raised');
  });
  after(async () => {
    for (const client of clients) client.close();
    await server.stop();
  });

  test('the table shows the merged since-start percentiles, the connections and the active alert as /stats has them', async () => {
    const { code, stdout, stderr } = await report(['--url', url, '--token', TOKEN]);
    assert.equal(code, 0, stderr);
    const pub = settled.latency.pub!.since_start;
    const line = stdout.split('\n').find((l) => l.startsWith('pub '))!;
    const cells = line.trim().split(/\s+/);
    // pub, then P50 P95 P99 count of the last interval, then of since start.
    assert.deepEqual(cells.slice(5).map((c) => Number(c.replaceAll(',', ''))), [pub.p50_ms, pub.p95_ms, pub.p99_ms, pub.count]);
    assert.match(stdout, new RegExp(`^connections\\s+${clients.length}\\s`, 'm'));
    assert.match(stdout, /^ {2}! queue_depth=2 messages \(threshold 1\) since /m);
    assert.match(stdout, /raised\s+queue_depth=2/);
  });

  test('--format json gives the same figures as one row; the token may come from WEBSOCKET_MONITORING_TOKEN', async () => {
    const { code, stdout, stderr } = await report(['--url', url, '--format', 'json'], { WEBSOCKET_MONITORING_TOKEN: TOKEN });
    assert.equal(code, 0, stderr);
    const row = JSON.parse(stdout) as Record<string, unknown>;
    assert.deepEqual(Object.keys(row), overviewColumns());
    const pub = settled.latency.pub!.since_start;
    assert.deepEqual([row.pub_since_start_p50_ms, row.pub_since_start_p95_ms, row.pub_since_start_p99_ms, row.pub_since_start_count], [pub.p50_ms, pub.p95_ms, pub.p99_ms, pub.count]);
    assert.equal(row.connections, clients.length);
    assert.equal(row.connections_peak, clients.length);
    assert.deepEqual((row.alerts as Array<{ alert: string; value: number }>).map((a) => [a.alert, a.value]), [['queue_depth', 2]]);
  });

  test('--format csv --out FILE appends one line per run under one header', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'ocs-report-')), 'report.csv');
    for (let i = 0; i < 2; i++) assert.equal((await report(['--url', url, '--token', TOKEN, '--format', 'csv', '--out', out])).code, 0);
    const lines = readFileSync(out, 'utf8').trimEnd().split('\n');
    assert.equal(lines.length, 3);
    assert.equal(lines[0], overviewColumns().join(','));
    const columns = overviewColumns();
    const row = lines[2]!.split(',');
    assert.equal(row[columns.indexOf('pub_since_start_count')], String(2 * PUBS));
    assert.match(lines[2]!, /,queue_depth=2 messages \(threshold 1\)$/);
  });

  test('CSV fields with commas or quotes are quoted', () => {
    const line = csvLine({ at: 'x', alerts: [{ alert: 'a,"b"', value: 1, threshold: 0, unit: 'ms', since: '' }] });
    assert.ok(line.endsWith(',"a,""b""=1 ms (threshold 0)"'), line);
  });

  test('without the token it exits 1 and says which token; a bad option exits 2', async () => {
    const refused = await report(['--url', url]);
    assert.equal(refused.code, 1);
    // /stats and /alerts are asked at once: whichever answers 401 first is the one named.
    assert.match(refused.stderr, /GET \/(stats|alerts): 401 .*--token or WEBSOCKET_MONITORING_TOKEN/);
    const unreachable = await report(['--url', 'http://127.0.0.1:1']);
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, /GET \/stats: /);
    assert.equal((await report(['--format', 'xml'])).code, 2);
    assert.equal((await report(['--no-such-option'])).code, 2);
    // Past setTimeout's limit a wait fires at once: it would read the server every millisecond.
    const tooLong = await report(['--url', url, '--watch', '--interval', '10000000']);
    assert.equal(tooLong.code, 2);
    assert.match(tooLong.stderr, /--interval 10000000 is not a number of seconds from 0\.05 to 86400/);
  });

  test('--watch redraws the table in place every interval and exits 0 on Ctrl-C (SIGINT)', async () => {
    const child = spawn(process.execPath, [REPORT, '--url', url, '--token', TOKEN, '--watch'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    // Each redraw moves the cursor up over the previous table and clears to the end of the screen.
    await until(() => ((stdout.match(/\x1b\[\d+A\r\x1b\[J/g) ?? []).length >= 2 ? true : undefined), 'two redraws');
    child.kill('SIGINT');
    assert.equal(await exited, 0);
    assert.ok(stdout.startsWith('\x1b[?25l'), 'the cursor is hidden while watching');
    assert.ok(stdout.endsWith('\x1b[?25h\n'), 'and shown again on exit');
    const drawn = stdout.split(/\x1b\[\d+A\r\x1b\[J/);
    const times = drawn.map((d) => /at (\S+)/.exec(d)?.[1]);
    assert.equal(new Set(times).size, times.length, 'each drawing is a new interval');
  });

  test('--watch whose reader goes away (piped into head) exits 0 quietly; --watch --out a file that cannot be written exits 1 naming it', async () => {
    const child = spawn(process.execPath, [REPORT, '--url', url, '--token', TOKEN, '--watch', '--format', 'json', '--interval', '0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    // What `| head -n 1` does: read a line, then close the pipe.
    await new Promise((resolve) => child.stdout.once('data', resolve));
    child.stdout.destroy();
    assert.equal(await exited, 0, stderr);
    assert.equal(stderr, '');
    const unwritable = await report(['--url', url, '--token', TOKEN, '--watch', '--format', 'csv', '--out', '/nonexistent/report.csv']);
    assert.equal(unwritable.code, 1);
    assert.match(unwritable.stderr, /^report: cannot write \/nonexistent\/report\.csv: ENOENT/m);
    assert.doesNotMatch(unwritable.stderr, /cannot read|trying again/);
  });

  test('npm run report runs the built script and leaves dist/ in place', async () => {
    const run = await runCommand('npm', ['run', '--silent', 'report', '--', '--url', url, '--token', TOKEN, '--format', 'json'], { cwd: fileURLToPath(new URL('../..', import.meta.url)) }, 30_000);
    assert.equal(run.code, 0, run.stderr);
    assert.equal((JSON.parse(run.stdout) as Record<string, unknown>).pub_since_start_count, 2 * PUBS);
    assert.ok(existsSync(REPORT) && existsSync(fileURLToPath(import.meta.url)), 'dist/ is still there');
  });

  test('the server appends the same row to export_file once per interval, rotating by size and keeping export_keep files', async () => {
    await until(() => (existsSync(`${exportFile}.2`) ? true : undefined), 'two rotations', 30_000);
    const rows = exported(exportFile, 2);
    assert.ok(!existsSync(`${exportFile}.3`));
    for (const f of [exportFile, `${exportFile}.1`, `${exportFile}.2`]) if (existsSync(f)) assert.ok(statSync(f).size <= EXPORT_MAX_BYTES, f);
    for (const row of rows) assert.deepEqual(Object.keys(row), overviewColumns());
    const times = rows.map((r) => Date.parse(r.at as string));
    for (let i = 1; i < times.length; i++) assert.ok(times[i]! > times[i - 1]!, 'one row per interval, in order across the rotated files');
    const last = rows.at(-1)!;
    assert.equal(last.pub_since_start_count, 2 * PUBS);
    assert.equal(last.pub_since_start_p99_ms, settled.latency.pub!.since_start.p99_ms);
    assert.deepEqual((last.alerts as Array<{ alert: string }>).map((a) => a.alert), ['queue_depth']);
  });
});

describe('monitoring.export_file on a failing disk', () => {
  test('is logged once when it fails and once when it works again; the server serves on', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'ocs-export-')), 'not-yet');
    const file = join(dir, 'overview.jsonl');
    const server = await startProcess(testConfig({ websocket: { server: { shards: 1 }, monitoring: { metrics_collection_interval: 0.05, export_file: file } } }));
    try {
      const failed = (): Array<Record<string, unknown>> => server.logs.filter((l) => l.msg === 'metrics export file cannot be written; snapshots are dropped until it can');
      const recovered = (): Array<Record<string, unknown>> => server.logs.filter((l) => l.msg === 'metrics export file written again');
      await until(() => (failed().length > 0 ? true : undefined), 'the failure logged');
      // Several more intervals fail: still one line.
      const healthy = await getJson(server.port, '/health');
      assert.equal(healthy.status, 200);
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal(failed().length, 1);
      assert.equal(failed()[0]!.code, 'E_INTERNAL');
      assert.equal(failed()[0]!.file, file);
      mkdirSync(dir);
      await until(() => (recovered().length > 0 ? true : undefined), 'the recovery logged');
      assert.ok((recovered()[0]!.dropped as number) >= 1);
      await until(() => (exported(file, 0).length >= 2 ? true : undefined), 'rows in the file');
      assert.equal(failed().length, 1);
      assert.equal(recovered().length, 1);
    } finally {
      await server.stop();
    }
  });
});

/**
 * The quick suite against the real server (dist/src/main.js, started by the load tester the
 * way `npm run loadtest -- --quick` does), with tiny durations; then the command line end to
 * end (--output, HTML, --compare, a bad scenarios file) against the fixture server.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { DEFAULT_SCENARIOS_FILE } from '../tools/loadtest/cli.js';
import { runLoadTest } from '../tools/loadtest/runner.js';
import { applyOverrides, loadScenarios, selectScenarios } from '../tools/loadtest/scenarios.js';
import { SERVER_MAIN } from '../tools/lib/server-process.js';
import { assertSaneRun } from './fixtures/loadtest-sanity.js';
import { startProcess, testConfig } from './helpers/server.js';

const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../tools/loadtest/main.js', import.meta.url));
const FIXTURE = fileURLToPath(new URL('./fixtures/ocs-fixture-server.js', import.meta.url));

describe('load tester against the real server', () => {
  it('runs the quick suite (tiny durations) and reports sane, consistent figures', async () => {
    assert.ok(existsSync(SERVER_MAIN), 'dist/src/main.js is built by npm test');
    const scenarios = selectScenarios(loadScenarios(DEFAULT_SCENARIOS_FILE), { quick: true }).map((s) =>
      applyOverrides(s, { durationS: 3, warmupS: 0.5, drainS: 0.5 }),
    );
    assert.deepEqual(scenarios.map((s) => s.name), ['baseline', 'moderate']);
    const r = await runLoadTest({ scenarios, threads: 2 });
    assertSaneRun(r);
    assert.equal(r.target.launched, true);
    for (const s of r.scenarios) {
      assert.equal(s.connections.ok, s.spec.connections, `${s.name}: all connections welcomed`);
      assert.ok(s.latency.fanout.count > 0, `${s.name}: fan-out measured`);
      assert.ok(s.delivery.pubExpected > 0);
      // send: either measured, or reported as unsupported (and then not an error)
      if (!s.send.supported) assert.match(s.send.note, /unsupported|refused|no answer/);
      assert.ok(s.timeSeries.length >= 3, `${s.name}: time series`);
    }
  });
});

describe('load tester against a server that dies halfway through the window', () => {
  it('grades throughput against the scenario\'s schedule, not what the dead connections no longer sent', async () => {
    const server = await startProcess(testConfig({ websocket: { server: { shards: 1 } } }));
    const baseline = selectScenarios(loadScenarios(DEFAULT_SCENARIOS_FILE), { names: ['baseline'] })[0]!;
    const spec = { ...applyOverrides(baseline, { durationS: 4, warmupS: 0.5, drainS: 0.5 }), connections: 20, groupSize: 10, rates: { pub: 5, send: 0, ping: 0.2 } };
    // About 2 s into the 4 s window (connecting and warm-up take about a second).
    const kill = setTimeout(() => void server.stop('SIGKILL'), 3000);
    try {
      const r = await runLoadTest({ scenarios: [spec], host: '127.0.0.1', port: server.port, threads: 1 });
      const s = r.scenarios[0]!;
      assert.equal(s.offered.deliveriesPerS, 20 * 5 * 10, 'the schedule: connections x pub rate x group size');
      const share = s.throughput.totalDeliveredPerS / s.offered.deliveriesPerS;
      assert.ok(share < 0.8, `delivered ${s.throughput.totalDeliveredPerS}/s of the 1,000/s offered`);
      assert.ok(s.grade.reasons.some((reason) => /throughput/.test(reason)), s.grade.reasons.join('; '));
      assert.notEqual(s.grade.grade, 'A+');
    } finally {
      clearTimeout(kill);
      await server.stop('SIGKILL');
    }
  });
});

describe('npm run loadtest (command line)', () => {
  it('writes JSON and HTML reports, compares two runs, and names a bad scenarios key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ocs-lt-cli-'));
    try {
      const out = join(dir, 'a.json');
      const common = ['--scenario', 'baseline', '--connections', '20', '--duration', '1', '--warmup', '0', '--drain', '0.5', '--threads', '1'];
      const first = await run(process.execPath, [CLI, ...common, '--server-command', `${process.execPath} ${FIXTURE}`, '--output', out]);
      assert.match(first.stdout, /baseline .* (A\+|A|B|C|D|F)\n/);
      assert.match(first.stdout, /Overall grade: /);
      const report = JSON.parse(readFileSync(out, 'utf8')) as { scenarios: Array<{ name: string; connections: { target: number } }> };
      assert.equal(report.scenarios[0]!.name, 'baseline');
      assert.equal(report.scenarios[0]!.connections.target, 20);
      const html = readFileSync(join(dir, 'a.html'), 'utf8');
      assert.ok(html.includes('<svg'));

      const cmp = await run(process.execPath, [CLI, '--compare', out, out]);
      assert.match(cmp.stdout, /0 figure\(s\) worse, 0 better/);

      const bad = join(dir, 'bad.yaml');
      writeFileSync(bad, 'scenarios:\n  baseline:\n    connections: 10\n    duration_s: 1\n    rates: { pubb: 1 }\n');
      await assert.rejects(run(process.execPath, [CLI, '--scenarios-file', bad]), (err: { code: number; stderr: string }) => {
        assert.equal(err.code, 2);
        assert.match(err.stderr, /scenarios\.baseline\.rates: unrecognized key "pubb"/);
        return true;
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

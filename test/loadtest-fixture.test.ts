/**
 * The load tester against the test fixture server (test/fixtures/ocs-fixture-server.ts):
 * exact delivery counts, `send` supported and unsupported, and coordinated-omission
 * correction against a deliberately slow server.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runLoadTest } from '../tools/loadtest/runner.js';
import { parseScenarios, type ScenarioSpec } from '../tools/loadtest/scenarios.js';
import { assertSaneRun } from './fixtures/loadtest-sanity.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/ocs-fixture-server.js', import.meta.url));
const fixture = (...args: string[]): string[] => [process.execPath, FIXTURE, ...args];

function scenario(name: string, raw: Record<string, unknown>): ScenarioSpec {
  return parseScenarios({ scenarios: { [name]: raw } })[0]!;
}

describe('load tester against the fixture server', () => {
  it('runs a steady scenario: every owed delivery arrives, send is measured, report is sane', async () => {
    const spec = scenario('steady', {
      connections: 40,
      duration_s: 2,
      warmup_s: 0.5,
      drain_s: 1,
      group_size: 10,
      rates: { pub: 2, send: 1, ping: 1 },
    });
    const r = await runLoadTest({ scenarios: [spec], serverCommand: fixture(), threads: 2 });
    assertSaneRun(r);
    const s = r.scenarios[0]!;
    assert.equal(r.target.sendSupported, true);
    assert.equal(s.connections.ok, 40);
    assert.ok(s.delivery.pubExpected > 0);
    // 40 connections × 2 pubs/s × 2 s × 10 members, give or take the phase of the schedule
    assert.ok(s.delivery.pubExpected >= 1200 && s.delivery.pubExpected <= 2000, `owed ${s.delivery.pubExpected}`);
    assert.equal(s.delivery.pubLost, 0);
    assert.equal(s.delivery.duplicates, 0);
    assert.ok(s.delivery.sendExpected > 0);
    assert.equal(s.delivery.sendLost, 0);
    assert.ok(s.latency.send.count > 0 && s.latency.ping.count > 0 && s.latency.connect.count === 40);
    assert.equal(s.server.stats.available, true);
    assert.equal(s.server.stats.latencies[0]?.metric, 'latency.delivery');
    assert.equal(s.errors.count, 0);
  });

  it('reports send as unsupported, apart from the error rate', async () => {
    const spec = scenario('nosend', { connections: 10, duration_s: 1, warmup_s: 0.2, drain_s: 0.5, group_size: 5, rates: { pub: 2, send: 2, ping: 1 } });
    const r = await runLoadTest({ scenarios: [spec], serverCommand: fixture('--no-send'), threads: 1 });
    assertSaneRun(r);
    const s = r.scenarios[0]!;
    assert.equal(r.target.sendSupported, false);
    assert.match(r.target.sendNote, /unsupported by the server/);
    assert.equal(s.send.supported, false);
    assert.equal(s.errors.count, 0);
    assert.ok(s.notes.some((n) => n.includes('send was not tested')));
  });

  it('churn: connections close and reopen, and loss is still counted exactly', async () => {
    const spec = scenario('churn', {
      kind: 'churn',
      connections: 30,
      duration_s: 2,
      warmup_s: 0.3,
      drain_s: 1,
      group_size: 10,
      rates: { pub: 2, send: 0, ping: 0 },
      churn: { rate: 10 },
    });
    const r = await runLoadTest({ scenarios: [spec], serverCommand: fixture(), threads: 2 });
    assertSaneRun(r);
    const s = r.scenarios[0]!;
    assert.ok(s.connections.attempts >= 45, `attempts ${s.connections.attempts}`);
    assert.equal(s.connections.unexpectedCloses, 0);
    assert.equal(s.delivery.pubLost, 0);
    assert.ok(s.delivery.pubExpected > 0);
  });

  it('coordinated-omission correction: a slow server raises the corrected percentiles', async () => {
    // The fixture serves each connection's frames one at a time, 20 ms each (50/s), while
    // each connection is scheduled to publish 100/s with one pub in flight. Measured from
    // the actual send, every pub looks like ~20 ms; measured from when it was due, the
    // backlog shows: half the schedule is still waiting at the end.
    const spec = scenario('slow', {
      connections: 4,
      duration_s: 2,
      warmup_s: 0,
      drain_s: 0.5,
      group_size: 1,
      in_flight: 1,
      rates: { pub: 100, send: 0, ping: 0 },
    });
    const r = await runLoadTest({ scenarios: [spec], serverCommand: fixture('--delay-ms', '20'), threads: 1 });
    const s = r.scenarios[0]!;
    assert.equal(s.status, 'ok');
    const corrected = s.latency.fanout;
    const raw = s.latency.fanoutUncorrected;
    assert.ok(raw.p50Ms >= 15 && raw.p99Ms < 200, `uncorrected P50 ${raw.p50Ms} P99 ${raw.p99Ms}`);
    assert.ok(corrected.p99Ms >= 400, `corrected P99 ${corrected.p99Ms}`);
    assert.ok(corrected.p99Ms >= 4 * raw.p99Ms, `corrected P99 ${corrected.p99Ms} vs uncorrected ${raw.p99Ms}`);
    assert.ok(corrected.p50Ms >= 4 * raw.p50Ms, `corrected P50 ${corrected.p50Ms} vs uncorrected ${raw.p50Ms}`);
    assert.ok(s.errors.pubsDeferred > 0);
    assert.notEqual(s.grade.grade, 'A+');
    assert.ok(s.grade.reasons.some((x) => x.startsWith('P99')));
  });
});

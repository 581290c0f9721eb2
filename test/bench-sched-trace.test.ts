/**
 * The broadcast benchmark's --sched reading (tools/bench/lib/sched-trace.ts): from
 * `perf sched timehist -w` lines, how long the server's busiest thread waited to run, who ran
 * on its CPU meanwhile, and who woke it. The lines are perf 6.1's format; the recording itself
 * needs perf and root, so it is not run here.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { attribute, parseTimehist } from '../tools/bench/lib/sched-trace.js';

// Server pid 100: main thread 100 (the primary), shard 105, a helper 101. Generator pid 200.
const TIMEHIST = `           time    cpu  task name                       wait time  sch delay   run time
                        [tid/pid]                          (msec)     (msec)     (msec)
--------------- ------  ------------------------------  ---------  ---------  ---------
    1000.000100 [0000]  node[105/100]                       0.000      0.000      0.100
    1000.000200 [0001]  node[200]                                                        awakened: node[105/100]
    1000.000700 [0000]  kdamond.0[50]                       0.000      0.000      0.500
    1000.000900 [0000]  node[100]                           0.000      0.000      0.200
    1000.001000 [0001]  node[101/100]                       0.000      0.000      0.300
    1000.001300 [0000]  node[105/100]                       0.000      0.800      0.300
    1000.002000 [0000]  <idle>                              0.000      0.000      0.700
    1000.002000 [0000]  swapper                                                          awakened: node[105/100]
    1000.002100 [0000]  node[105/100]                       0.700      0.010      0.090
`;

test('a long wait to run is put down to what ran on the same CPU, and the rest to nothing in the guest', () => {
  const parsed = parseTimehist(TIMEHIST.split('\n'));
  assert.equal(parsed.switches.length, 7, 'six task switches and one idle period; headers skipped');
  assert.equal(parsed.wakeups.length, 2);
  const report = attribute(parsed, 100, 200, 1);
  assert.ok(report.available);
  assert.equal(report.tid, 105, "the server's busiest thread");
  assert.equal(report.runsPerS, 3);
  assert.deepEqual(report.delayMs, { p50: 0.01, p99: 0.8, p999: 0.8, max: 0.8 });
  assert.deepEqual(report.longWaits, { thresholdMs: 0.2, perS: 1, totalMs: 0.8 });
  // Woken at .0002, running at .0010: kdamond and the primary had CPU 0 for 0.7 ms of it; the
  // helper ran on CPU 1, so it took nothing from the shard.
  assert.deepEqual(report.ranInsteadMs, { 'kdamond.0': 0.5, 'server: main thread': 0.2, 'nothing in the guest': 0.1 });
  assert.deepEqual(report.wokenByPerS, { 'load generator (network)': 1, 'timer or interrupt on an idle CPU': 1 });
});

test('a recording without the server in it says so', () => {
  const report = attribute(parseTimehist(TIMEHIST.split('\n')), 999, 200, 1);
  assert.deepEqual(report, { available: false, reason: 'no switch of server process 999 was recorded' });
});

/**
 * A thread's own CPU time (src/metrics/thread-cpu.ts): what Linux counts for the thread that
 * opened it, not for the process, and -1 where there is nothing to read.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { ThreadCpu } from '../src/metrics/thread-cpu.js';

const spin = (ms: number): void => {
  const until = Date.now() + ms;
  while (Date.now() < until);
};

describe('per-thread CPU time', { skip: existsSync('/proc/thread-self/schedstat') ? false : 'no /proc/thread-self/schedstat here' }, () => {
  test('it grows by the time the thread itself runs', () => {
    const cpu = new ThreadCpu();
    const before = cpu.seconds();
    const process0 = process.cpuUsage();
    spin(200);
    const ran = cpu.seconds() - before;
    const usage = process.cpuUsage(process0);
    cpu.close();
    // Against the process's CPU over the same loop, not the wall clock: on a loaded machine
    // the loop gets less than its 200 ms, and both counts shrink alike.
    const processRan = (usage.user + usage.system) / 1e6;
    assert.ok(ran > 0.02 && ran >= processRan * 0.75 && ran <= processRan + 0.02, `this thread ran ${ran} s, the process ${processRan} s, for a 200 ms loop`);
  });

  test("another thread's work is not counted: a busy worker leaves this thread's time alone", async () => {
    const cpu = new ThreadCpu();
    const before = cpu.seconds();
    const worker = new Worker('const until = Date.now() + 300; while (Date.now() < until);', { eval: true });
    await new Promise((resolve) => worker.once('exit', resolve));
    const ran = cpu.seconds() - before;
    cpu.close();
    assert.ok(ran < 0.15, `this thread ran ${ran} s while a worker spun for 300 ms`);
  });

  test('where there is nothing to read, it says -1', () => {
    const cpu = new ThreadCpu('/proc/no-such-file');
    assert.equal(cpu.seconds(), -1);
    cpu.close();
  });
});

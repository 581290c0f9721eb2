/**
 * The load tester sends on schedule and measures how late it was: the pacer's decisions, its
 * spin lead and budget, that it never sends early, the schedule's grid, the schedule-lag
 * measurement, and the loadgen thread's real-time priority. No sockets, and no speed asserted
 * (the machine decides how precise a wait is).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { summarize } from '../tools/lib/histogram.js';
import { monoUs } from '../tools/loadtest/clock.js';
import { LATE_SEND_US, Measurements } from '../tools/loadtest/measurements.js';
import { APPROACH_US, Pacer, SLICE_US, SPIN_BUCKET_US, SPIN_LEAD_US, SPIN_SHARE, planStep } from '../tools/loadtest/pacer.js';
import { logAxis } from '../tools/loadtest/report-html.js';
import { REALTIME_PRIORITY } from '../tools/loadtest/realtime.js';
import { GRID_ORIGIN_US, RateStream } from '../tools/loadtest/schedule.js';

describe('pacer: the step towards the next due time', () => {
  const lead = 100;
  it('leaves a far or absent due time to a timer, so the event loop runs meanwhile', () => {
    assert.deepEqual(planStep(0, APPROACH_US + 1, lead, 1e6), { kind: 'timer' });
    assert.deepEqual(planStep(0, Number.NaN, lead, 1e6), { kind: 'timer' });
  });
  it('blocks in short slices when the due time is near, stopping a lead before it', () => {
    assert.deepEqual(planStep(0, APPROACH_US, lead, 1e6), { kind: 'slice', waitUs: SLICE_US });
    assert.deepEqual(planStep(1_000, 1_130, lead, 1e6), { kind: 'slice', waitUs: 30 });
  });
  it('spins through the lead to the due time while it has spin budget, else blocks to it', () => {
    assert.deepEqual(planStep(1_000, 1_080, lead, 1e6), { kind: 'spin', untilUs: 1_080 });
    assert.deepEqual(planStep(1_000, 1_080, lead, 50), { kind: 'wait', waitUs: 80 });
  });
  it('sends what is due or overdue', () => {
    assert.deepEqual(planStep(1_000, 1_000, lead, 0), { kind: 'send' });
    assert.deepEqual(planStep(1_000, 400, lead, 0), { kind: 'send' });
  });
});

describe('pacer: the spin lead and its budget', () => {
  it('spins through the last SPIN_LEAD_US before a due time, and blocks before that', () => {
    const pacer = new Pacer(() => 0);
    assert.deepEqual(pacer.plan(0, SPIN_LEAD_US), { kind: 'spin', untilUs: SPIN_LEAD_US });
    assert.deepEqual(pacer.plan(0, SPIN_LEAD_US + 30), { kind: 'slice', waitUs: 30 });
  });
  it('blocks to the due time once the spin budget is spent, and earns it back with time', () => {
    let now = 0;
    const pacer = new Pacer(() => (now += 10)); // every read of the clock moves it 10 µs
    let spins = 0;
    for (;;) {
      const step = pacer.plan(now, now + SPIN_LEAD_US);
      if (step.kind !== 'spin') {
        assert.deepEqual(step, { kind: 'wait', waitUs: SPIN_LEAD_US });
        break;
      }
      pacer.spinUntil(step.untilUs);
      spins++;
    }
    // The bucket, plus the SPIN_SHARE of the time spent meanwhile, pays for about this many.
    const expected = SPIN_BUCKET_US / SPIN_LEAD_US / (1 - SPIN_SHARE);
    assert.ok(Math.abs(spins - expected) <= 2, `${spins} spins, about ${expected} expected`);
    now += 1_000_000; // a second later the bucket is full again
    assert.equal(pacer.plan(now, now + SPIN_LEAD_US).kind, 'spin');
  });
});

describe('pacer: on the real clock', () => {
  it('reaches every due time and never sends before it', () => {
    const pacer = new Pacer();
    const start = monoUs() + 1_000;
    const early: number[] = [];
    for (let k = 0; k < 40; k++) {
      const due = start + k * 250;
      for (;;) {
        const step = pacer.plan(monoUs(), due);
        if (step.kind === 'send') break;
        if (step.kind === 'timer') assert.fail('a due time within 2 ms never needs a timer');
        else if (step.kind === 'spin') pacer.spinUntil(step.untilUs);
        else pacer.block(step.waitUs);
      }
      const sentAt = monoUs();
      if (sentAt < due) early.push(due - sentAt);
    }
    assert.deepEqual(early, []);
    assert.ok(pacer.blockedUs + pacer.spunUs > 0);
  });
});

describe('schedule lag measurement', () => {
  it('records sent − due for messages due in the window, and counts the ones over 10 ms late', () => {
    const m = new Measurements();
    m.startUs = 1_000_000;
    m.endUs = 2_000_000;
    m.noteLag(999_999, 1_500_000); // due before the window: not measured
    m.noteLag(1_100_000, 1_100_040); // 40 µs late
    m.noteLag(1_200_000, 1_200_060); // 60 µs
    m.noteLag(1_300_000, 1_300_000 + LATE_SEND_US + 1); // a late send
    m.noteLag(2_000_000, 2_000_010); // due at the window's end: not measured
    const lag = summarize(m.h.scheduleLag);
    assert.equal(lag.count, 3);
    assert.equal(lag.minMs, 0.04);
    assert.equal(lag.p50Ms, 0.06);
    assert.ok(Math.abs(lag.maxMs - 10.001) < 0.011, `max ${lag.maxMs}`);
    assert.equal(m.counters.lateSends, 1);
  });

  it('keeps the kinds of a thread apart on the grid, through a ramp and a backlog', () => {
    // Two kinds at one rate, a third of an interval apart (sender.ts). Without a grid, a
    // backlog fired in one turn left both streams due at the same moments ever after, and the
    // second of each pair left only after the first one's write.
    const pub = new RateStream(0.2, 1 / 6);
    const ping = new RateStream(0.2, 5 / 6);
    const dues = { pub: [] as number[], ping: [] as number[] };
    const run = (t: number, n: number): void => {
      pub.run(t, n, (d) => dues.pub.push(d));
      ping.run(t, n, (d) => dues.ping.push(d));
    };
    for (let n = 1; n <= 50; n++) run(1_000_000 + n * 20_000, n); // connections arrive, the rate rises
    const rampEnd = 1_000_000 + 50 * 20_000;
    run(rampEnd + 300_000, 50); // a 300 ms stall: a backlog of both kinds fires in one turn
    for (let t = rampEnd + 301_000; t < rampEnd + 2_000_000; t += 1_000) run(t, 50);
    const interval = 1_000_000 / (0.2 * 50);
    const after = (a: number[]): number[] => a.filter((d) => d > rampEnd);
    let closest = Number.POSITIVE_INFINITY;
    for (const p of after(dues.pub)) for (const q of after(dues.ping)) closest = Math.min(closest, Math.abs(p - q));
    assert.ok(after(dues.pub).length >= 20 && after(dues.ping).length >= 20);
    assert.ok(closest >= interval / 3 - 1, `a pub and a ping ${closest} µs apart`);
  });

  it('puts due times of whole-millisecond intervals between the kernel\'s millisecond ticks', () => {
    // The baseline scenario's sends: 2.5/s per thread, at a quarter of the interval.
    const send = new RateStream(0.05, 0.25);
    const dues: number[] = [];
    for (let t = 5_000_000; t < 9_000_000; t += 1_000) send.run(t, 50, (d) => dues.push(d));
    assert.ok(dues.length >= 9);
    for (const d of dues) assert.equal(d % 1_000, 500, `due at ${d} µs`);
  });

  it('the pacer waits for exactly the message the schedule fires next', () => {
    const at = (us: number): number => GRID_ORIGIN_US + us;
    const stream = new RateStream(10, 0);
    assert.ok(Number.isNaN(stream.peekDueUs(1)), 'a stream that has not run has no due time yet');
    stream.run(at(1_000_000), 1, () => {});
    assert.equal(stream.peekDueUs(1), at(1_100_000));
    assert.ok(Number.isNaN(stream.peekDueUs(0)), 'no connections: nothing to wait for');
    // Ten times the connections: the next message is due one new interval after the last.
    assert.equal(stream.peekDueUs(10), at(1_010_000));
    const fired: number[] = [];
    stream.run(at(1_010_000), 10, (d) => fired.push(d));
    assert.deepEqual(fired, [at(1_010_000)]);
  });
});

describe('loadgen thread priority', () => {
  it('puts the calling thread, and only it, under SCHED_FIFO where allowed, or says why not', async () => {
    // In a worker thread, as the loadgen threads do; chrt reads back what the kernel holds.
    const src = `
      const { parentPort } = require('node:worker_threads');
      const { execFileSync } = require('node:child_process');
      const { readlinkSync } = require('node:fs');
      import(${JSON.stringify(new URL('../tools/loadtest/realtime.js', import.meta.url).href)}).then(({ enterRealtime }) => {
        const said = enterRealtime();
        const tid = readlinkSync('/proc/thread-self').split('/').pop();
        const policy = execFileSync('chrt', ['--pid', tid]).toString();
        parentPort.postMessage({ said, policy });
      });`;
    const { Worker } = await import('node:worker_threads');
    const w = new Worker(src, { eval: true });
    const { said, policy } = await new Promise<{ said: string; policy: string }>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    await w.terminate();
    if (said === `SCHED_FIFO ${REALTIME_PRIORITY}`) {
      assert.match(policy, /SCHED_FIFO/);
      assert.match(policy, new RegExp(`priority: ${REALTIME_PRIORITY}\\b`));
    } else {
      assert.match(said, /^normal \(.+\)$/);
      assert.doesNotMatch(policy, /SCHED_FIFO/);
    }
    // The test's own thread kept its policy.
    const own = execFileSync('chrt', ['--pid', String(process.pid)]).toString();
    assert.doesNotMatch(own, /SCHED_FIFO/);
  });
});

describe('report: the percentile chart latency axis', () => {
  it('spans whole decades around the values, so one outlier leaves the rest readable', () => {
    const axis = logAxis([0.05, 0.2, 0.9, 1500]);
    assert.deepEqual(axis.ticks, [0.01, 0.1, 1, 10, 100, 1000, 10000]);
    // Each decade gets the same height: 0.1 → 1 ms as much room as 100 → 1000 ms.
    const decade = (a: number, b: number): number => axis.py(a) - axis.py(b);
    assert.ok(Math.abs(decade(0.1, 1) - decade(100, 1000)) < 1e-9);
    // Zero (a curve's first point can be) sits on the floor, not off the chart.
    assert.equal(axis.py(0), axis.py(0.01));
  });
});

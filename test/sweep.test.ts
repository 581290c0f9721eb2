/**
 * The connection sweep (src/shard/sweep.ts) without sockets: what it decides for one connection
 * (judge()), and how its walk over a shard's connections is cut into steps.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Connection } from '../src/shard/connection.js';
import { judge, MAX_STEPS, pongArrived, STEP_CONNECTIONS, stepsFor, Sweeper, Verdict, type SweepClock, type SweepPolicy } from '../src/shard/sweep.js';

describe('sweep verdict for one connection', () => {
  const policy: SweepPolicy = { maxBackpressure: 1000, idleMs: 60_000, pingMs: 20_000 };
  const state = (lastSeen: number, nextPingAt: number, expiresAt = Infinity) => ({ lastSeen, nextPingAt, expiresAt });
  const never = (): number => assert.fail('no random draw expected');
  /** Both clocks at `ms`, or the wall clock stepped `step` ms away from the monotonic one. */
  const at = (ms: number, step = 0): SweepClock => ({ monotonic: ms, wall: ms + step });

  test('a connection over max_backpressure is a slow consumer, whatever else holds', () => {
    assert.equal(judge(state(0, 0), 1001, at(999_999), policy, never), Verdict.SLOW);
    assert.equal(judge(state(0, 0), 1000, at(1000), policy, () => 0), Verdict.KEEP, 'at the limit is not over it');
  });

  test('silence past idle_timeout closes; exactly idle_timeout does not', () => {
    assert.equal(judge(state(0, 1e12), 0, at(60_001), policy, never), Verdict.IDLE);
    assert.equal(judge(state(0, 1e12), 0, at(60_000), policy, never), Verdict.KEEP);
  });

  test('a step of the wall clock closes nobody for silence and moves no ping; a token\'s expiry follows the wall clock', () => {
    const hour = 3_600_000;
    assert.equal(judge(state(0, 1e12), 0, at(30_000, hour), policy, never), Verdict.KEEP, 'stepped an hour forward, 30 s quiet');
    assert.equal(judge(state(0, 1e12), 0, at(30_000, -hour), policy, never), Verdict.KEEP, 'stepped an hour back');
    const pinged = state(5000, 6000);
    assert.equal(judge(pinged, 0, at(5999, hour), policy, never), Verdict.KEEP);
    assert.equal(pinged.nextPingAt, 6000, 'the ping is due when it was');
    assert.equal(judge(state(0, 1e12, 2 * hour), 0, at(30_000, 2 * hour), policy, never), Verdict.EXPIRED, 'exp is an epoch time');
  });

  test('idle_timeout 0 never closes for silence', () => {
    assert.equal(judge(state(0, 1e12), 0, at(1e9), { ...policy, idleMs: 0 }, never), Verdict.KEEP);
  });

  test('the first sweep schedules the first ping at a random point of the interval, without pinging', () => {
    const conn = state(1000, 0);
    assert.equal(judge(conn, 0, at(1000), policy, () => 0.25), Verdict.KEEP);
    assert.equal(conn.nextPingAt, 1000 + 0.25 * 20_000);
  });

  test('a due ping is sent and the next one scheduled a full interval later', () => {
    const conn = state(5000, 6000);
    assert.equal(judge(conn, 0, at(5999), policy, never), Verdict.KEEP, 'not yet due');
    assert.equal(conn.nextPingAt, 6000);
    assert.equal(judge(conn, 0, at(6000), policy, never), Verdict.PING);
    assert.equal(conn.nextPingAt, 26_000);
  });

  test('ping_interval 0 never pings nor schedules', () => {
    const conn = state(0, 0);
    assert.equal(judge(conn, 0, at(1000), { ...policy, pingMs: 0 }, never), Verdict.KEEP);
    assert.equal(conn.nextPingAt, 0);
  });

  test('a connection past its deadline (auth_timeout, or its token\'s expiry) is closed; one just before it is not', () => {
    assert.equal(judge(state(1000, 1e12, 5000), 0, at(5000), policy, never), Verdict.EXPIRED);
    assert.equal(judge(state(1000, 1e12, 5000), 0, at(4999), policy, never), Verdict.KEEP);
    assert.equal(judge(state(1000, 1e12), 0, at(1e12), { ...policy, idleMs: 0, pingMs: 0 }, never), Verdict.KEEP, 'Infinity: no deadline');
  });

  test('a connection closed as slow or idle is not also scheduled for a ping', () => {
    const slow = state(0, 100);
    judge(slow, 5000, at(200), policy, never);
    assert.equal(slow.nextPingAt, 100);
    const idle = state(0, 100);
    judge(idle, 0, at(70_000), policy, never);
    assert.equal(idle.nextPingAt, 100);
  });

  test('a pong answering our ping is measured and free; a pong nobody asked for is for the caller to count as a frame', () => {
    const rtts: number[] = [];
    const latency = { recordUs: (_kind: number, us: number) => void rtts.push(us) };
    const conn = { lastSeen: 0, pingSentAt: performance.now() - 5 } as Connection;
    assert.equal(pongArrived(conn, latency), true);
    assert.equal(rtts.length, 1);
    assert.ok(rtts[0]! >= 5000, 'the round trip, in µs');
    assert.ok(conn.lastSeen > 0, 'any pong shows the connection alive');
    assert.equal(pongArrived(conn, latency), false, 'the ping was answered already');
    assert.equal(rtts.length, 1);
  });
});

describe('the sweep walks the connections in slices', () => {
  // A connection as the sweep sees it: never due for anything, its socket counting its judgements.
  function fakeConnection(judged: Map<number, number>, id: number): Connection {
    const ws = {
      getBufferedAmount: () => {
        judged.set(id, (judged.get(id) ?? 0) + 1);
        return 0;
      },
    };
    return { closed: false, lastSeen: Date.now(), nextPingAt: 1e15, expiresAt: Infinity, user: 'u', ws } as unknown as Connection;
  }

  function sweeperOver(connections: Set<Connection>, onUpkeep: () => void): Sweeper {
    return new Sweeper({
      connections,
      policy: { maxBackpressure: 1000, idleMs: 0, pingMs: 0 },
      intervalMs: 250,
      counters: new Float64Array(64),
      fail: () => assert.fail('nobody is due'),
      alsoSweep: onUpkeep,
    });
  }

  test('a walk takes one step per STEP_CONNECTIONS connections, at most MAX_STEPS, so a small shard wakes once per interval', () => {
    assert.equal(stepsFor(0), 1);
    assert.equal(stepsFor(STEP_CONNECTIONS), 1);
    assert.equal(stepsFor(STEP_CONNECTIONS + 1), 2);
    assert.equal(stepsFor(1_000_000), MAX_STEPS);
  });

  test('each step judges 1/steps of the connections, so that every connection is judged once per interval', () => {
    const judged = new Map<number, number>();
    const count = 3 * STEP_CONNECTIONS - 10; // three steps
    const connections = new Set(Array.from({ length: count }, (_, i) => fakeConnection(judged, i)));
    let upkeep = 0;
    const sweeper = sweeperOver(connections, () => upkeep++);
    sweeper.sweepSlice();
    assert.equal(judged.size, Math.ceil(count / 3), 'one step judges its share, not all');
    connections.add(fakeConnection(judged, -1)); // arrives during the walk: reached in the same walk
    sweeper.sweepSlice();
    sweeper.sweepSlice();
    assert.equal(judged.size, count + 1);
    assert.ok([...judged.values()].every((n) => n === 1), 'nobody twice in one interval');
    assert.equal(upkeep, 1, 'the per-address upkeep runs once per interval');
    sweeper.sweepSlice();
    assert.equal(upkeep, 2, 'the fourth step starts the next walk');
  });

  test('stopped from inside a step, the sweep arms no further timer', async () => {
    const connections = new Set<Connection>();
    let steps = 0;
    const sweeper: Sweeper = new Sweeper({
      connections,
      policy: { maxBackpressure: 1000, idleMs: 0, pingMs: 0 },
      intervalMs: 10,
      counters: new Float64Array(64),
      fail: () => assert.fail('nobody is due'),
      alsoSweep: () => {
        steps++;
        sweeper.stop();
      },
    });
    sweeper.start();
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(steps, 1);
  });

  test('a connection that closed after the walk looked ahead at it is not judged (its socket may not be touched)', () => {
    const judged = new Map<number, number>();
    const all = Array.from({ length: 2 * STEP_CONNECTIONS }, (_, i) => fakeConnection(judged, i));
    const connections = new Set(all);
    const sweeper = sweeperOver(connections, () => {});
    sweeper.sweepSlice(); // judges the first half, looks ahead at the first of the second
    const next = all[STEP_CONNECTIONS]!;
    next.closed = true;
    connections.delete(next);
    sweeper.sweepSlice();
    assert.equal(judged.get(STEP_CONNECTIONS), undefined);
    assert.equal(judged.size, 2 * STEP_CONNECTIONS - 1);
  });

  test('with few connections one step judges them all', () => {
    const judged = new Map<number, number>();
    const connections = new Set(Array.from({ length: 25 }, (_, i) => fakeConnection(judged, i)));
    let upkeep = 0;
    const sweeper = sweeperOver(connections, () => upkeep++);
    sweeper.sweepSlice();
    assert.equal(judged.size, 25);
    sweeper.sweepSlice();
    assert.ok([...judged.values()].every((n) => n === 2), 'each step is a whole walk');
    assert.equal(upkeep, 2);
  });

  test('a shard without connections does not walk: the sweep parks, and a connection opening wakes it', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const judged = new Map<number, number>();
    const connections = new Set<Connection>();
    let upkeep = 0;
    const sweeper = sweeperOver(connections, () => upkeep++);
    sweeper.start();
    for (let i = 0; i < 40; i++) t.mock.timers.tick(250);
    assert.equal(upkeep, 1, 'one look, then nothing while nobody is connected');
    connections.add(fakeConnection(judged, 1));
    sweeper.wake();
    sweeper.wake(); // a second opening changes nothing
    for (let i = 0; i < 4; i++) t.mock.timers.tick(250);
    assert.deepEqual([upkeep, judged.get(1)], [5, 4], 'every interval again while a connection is open');
    connections.clear();
    for (let i = 0; i < 40; i++) t.mock.timers.tick(250);
    assert.equal(upkeep, 6, 'parked again once the last one closed');
    sweeper.stop();
  });
});

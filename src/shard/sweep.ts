/**
 * The periodic walk over a shard's connections: closes slow consumers (1013), connections
 * silent past idle_timeout (4408) and ones past their deadline (4001: no `auth` frame within
 * auth_timeout, or the token expired), and pings each connection once per ping_interval. The
 * decision for one connection is judge(), free of sockets so it can be tested on its own.
 *
 * Deadlines are checked here rather than by a timer per connection: the walk happens anyway
 * (every backpressure_check_interval, 0.25 s by default), a comparison per connection costs
 * less than a timer each, and a refreshed token only moves a number instead of re-arming one.
 *
 * The walk is cut into steps spread over the interval, each taking its share of the
 * connections: one walk over 2,000 connections took about 1 ms (two native calls each), and at
 * 15,000 it would hold the loop for several ms four times a second, in the latency tail of every
 * delivery that waited behind it. Each connection is still judged once per interval. A step
 * takes about STEP_CONNECTIONS connections, so a shard with few connections wakes once per
 * interval rather than MAX_STEPS times: each timer wake-up of an idle thread cost about 0.25 ms
 * of CPU on our VMs, and the idle server spent more on wake-ups than on work. For the same
 * reason a shard without connections does not walk at all: the walk parks, and the next
 * connection's opening wakes it (wake()).
 */
import { performance } from 'node:perf_hooks';
import { Latency } from '../metrics/latencies.js';
import type { ThreadMetrics } from '../metrics/thread-metrics.js';
import { CloseCodes } from '../protocol/errors.js';
import { Counter } from '../shared/shard-counters.js';
import type { Connection } from './connection.js';
import type { Fail } from './fail.js';

export interface SweepPolicy {
  /** Bytes waiting to be sent beyond which a connection is a slow consumer. */
  maxBackpressure: number;
  /** Silence (no frame, no pong) that closes a connection, ms; 0: never. */
  idleMs: number;
  /** Time between server pings of one connection, ms; 0: no pings. */
  pingMs: number;
}

/**
 * The time a sweep step judges by: the wall clock for deadlines that are epoch times (a token's
 * `exp`, and auth_timeout beside them), the monotonic one (performance.now()) for silence and
 * pings, which a step of the wall clock must not move.
 */
export interface SweepClock {
  wall: number;
  monotonic: number;
}

/** What the sweep does to one connection (numbers, so judging allocates nothing). */
export const Verdict = { KEEP: 0, SLOW: 1, IDLE: 2, PING: 3, EXPIRED: 4 } as const;
export type VerdictValue = (typeof Verdict)[keyof typeof Verdict];

/**
 * Judges one connection; schedules its next ping in `conn.nextPingAt`. Pings are due per
 * connection, first at a random point of its first interval, so connections that arrived
 * together are not all pinged (and do not all answer) in the same instant: a burst of 2,000
 * pings showed as a latency spike.
 */
export function judge(
  conn: Pick<Connection, 'lastSeen' | 'nextPingAt' | 'expiresAt'>,
  buffered: number,
  clock: SweepClock,
  policy: SweepPolicy,
  random: () => number = Math.random,
): VerdictValue {
  if (buffered > policy.maxBackpressure) return Verdict.SLOW;
  if (clock.wall >= conn.expiresAt) return Verdict.EXPIRED;
  const now = clock.monotonic;
  if (policy.idleMs > 0 && now - conn.lastSeen > policy.idleMs) return Verdict.IDLE;
  if (policy.pingMs > 0 && now >= conn.nextPingAt) {
    const first = conn.nextPingAt === 0;
    conn.nextPingAt = now + (first ? random() * policy.pingMs : policy.pingMs);
    if (!first) return Verdict.PING;
  }
  return Verdict.KEEP;
}

/**
 * A pong arrived: the connection is alive, and the round trip of our ping (if one waits) is
 * measured. False for a pong no ping of ours asked for, which the caller counts as a frame.
 */
export function pongArrived(conn: Connection, latency: Pick<ThreadMetrics, 'recordUs'>): boolean {
  const now = performance.now();
  conn.lastSeen = now;
  if (conn.pingSentAt === 0) return false;
  latency.recordUs(Latency.ping, (now - conn.pingSentAt) * 1000);
  conn.pingSentAt = 0;
  return true;
}

export interface SweeperOptions {
  /** The shard's open connections (the registry's live Set). */
  connections: Set<Connection>;
  policy: SweepPolicy;
  intervalMs: number;
  counters: Float64Array;
  fail: Fail;
  /** More upkeep on the same timer (the per-address table). */
  alsoSweep?(now: number): void;
}

/**
 * A step this much later than its timer asked for means the thread did not run meanwhile (the
 * process stopped, the VM frozen or migrated): its clients' frames of that time still wait in
 * the sockets, and Node runs due timers before it reads them, so judging silence then would
 * close every client (4408) whose frames had not been read yet. Silence is not judged for one
 * interval after such a stall: the reads come first.
 */
export const STALL_MS = 1000;

/** Connections one step of the walk judges (fewer steps would hold the loop longer)... */
export const STEP_CONNECTIONS = 500;
/** ...unless that would take more than this many steps per interval. */
export const MAX_STEPS = 10;

/** Steps of one walk over `connections`: 1 for up to STEP_CONNECTIONS, at most MAX_STEPS. */
export function stepsFor(connections: number): number {
  return Math.min(MAX_STEPS, Math.max(1, Math.ceil(connections / STEP_CONNECTIONS)));
}

export class Sweeper {
  private timer: NodeJS.Timeout | null = null;
  /** Where the walk stands: a live Set iterator, so connections added meanwhile are reached too. */
  private cursor: Iterator<Connection> | null = null;
  /** The walk's next connection, taken from the cursor at the end of the last step. */
  private pending: Connection | null = null;
  /** Steps of the current walk (fixed when it starts), and the next step's number. */
  private steps = 1;
  private step = 0;
  private running = false;
  /** When the last step ran (monotonic, 0: none since start or a park), and until when silence is not judged after a stall. */
  private lastStepAt = 0;
  private silenceJudgedFrom = -Infinity;
  private readonly tick = (): void => {
    this.timer = null;
    this.sweepSlice();
    // A step can end in stop() (a verdict that stops the shard): then no new timer. Nobody to
    // look after: parked until wake() (the per-address table needs no walk to stay correct).
    if (this.running && this.options.connections.size > 0) this.timer = setTimeout(this.tick, this.options.intervalMs / this.steps);
    else this.lastStepAt = 0;
  };

  /** One for every step: judging allocates nothing. */
  private readonly clock: SweepClock = { wall: 0, monotonic: 0 };

  constructor(private readonly options: SweeperOptions) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.timer = setTimeout(this.tick, this.options.intervalMs / this.steps);
  }

  /** A connection opened: a parked walk starts again, one interval from now. */
  wake(): void {
    if (this.running && this.timer === null) this.timer = setTimeout(this.tick, this.options.intervalMs / this.steps);
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /**
   * One step: the next 1/steps of the connections. A walk starts at most once per interval
   * (with the per-address upkeep), so nobody is judged twice in one; a walk that more arrivals
   * made longer goes on into the next interval until it is done.
   */
  sweepSlice(): void {
    const { connections } = this.options;
    const clock = this.clock;
    clock.wall = Date.now();
    clock.monotonic = performance.now();
    const stepMs = this.options.intervalMs / this.steps;
    // At most once per idle_timeout: a loop late all the time (a shard far over its load) must not spare the idle for ever.
    const stalled = this.lastStepAt > 0 && clock.monotonic - this.lastStepAt > stepMs + STALL_MS;
    if (stalled && clock.monotonic > this.silenceJudgedFrom + this.options.policy.idleMs) this.silenceJudgedFrom = clock.monotonic + this.options.intervalMs;
    this.lastStepAt = clock.monotonic;
    if (this.step === 0) {
      this.steps = stepsFor(connections.size);
      this.cursor ??= connections.values();
      this.options.alsoSweep?.(clock.wall);
    }
    this.step = (this.step + 1) % this.steps;
    for (let budget = Math.ceil(connections.size / this.steps); budget > 0; budget--) {
      const conn = this.pending ?? this.next();
      this.pending = null;
      if (conn === null) return;
      // The one looked ahead at may have closed since (its socket may not be touched then).
      if (!conn.closed) this.judgeConnection(conn, clock);
    }
    // Look one ahead, so that a walk that ended exactly on its budget is known to be over now,
    // and the next interval starts a new one instead of finding the old iterator's end.
    this.pending = this.next();
  }

  /** The walk's next connection; null (and no cursor) once it is over. */
  private next(): Connection | null {
    if (this.cursor === null) return null;
    const next = this.cursor.next();
    if (!next.done) return next.value;
    this.cursor = null;
    return null;
  }

  private judgeConnection(conn: Connection, clock: SweepClock): void {
    const { policy, counters, fail } = this.options;
    const ws = conn.ws!;
    switch (judge(conn, ws.getBufferedAmount(), clock, policy)) {
      case Verdict.SLOW:
        counters[Counter.slow_consumers_closed]!++;
        fail(ws, conn, 'E_OVERLOADED', `slow consumer: over ${policy.maxBackpressure} bytes waiting to be sent`, undefined, true);
        break;
      case Verdict.IDLE:
        // Just after a stall its frames may wait unread (STALL_MS).
        if (clock.monotonic < this.silenceJudgedFrom) break;
        ws.end(CloseCodes.IDLE_TIMEOUT, 'idle timeout');
        break;
      case Verdict.EXPIRED:
        fail(ws, conn, 'E_UNAUTHORIZED', conn.user === null ? 'no auth frame within auth_timeout' : 'token expired; send an auth frame with a fresh token before it does', undefined, true);
        break;
      case Verdict.PING:
        conn.pingSentAt = performance.now();
        ws.ping();
        break;
    }
  }
}

/**
 * The parts of a shard that decide without a socket: which subprotocol an upgrade gets, the
 * per-connection rate limit, what the sweep does to a connection, the connection index the
 * broker's deliveries use, the bounds on admin requests, and what a token check that throws
 * does (no real token check throws, so a stand-in does). The shard as a whole is tested on real
 * sockets elsewhere.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Authenticator } from '../src/auth/identity.js';
import { ThreadMetrics } from '../src/metrics/thread-metrics.js';
import { createDoorbells } from '../src/rings/doorbell.js';
import { createRingBuffer } from '../src/rings/ring.js';
import { Admission, selectProtocol } from '../src/shard/admission.js';
import { BrokerLink, MAX_ADMIN_IN_FLIGHT } from '../src/shard/broker-link.js';
import type { Codec } from '../src/codec/codec.js';
import { failer } from '../src/shard/fail.js';
import { Out } from '../src/shard/out.js';
import type { LocalGroups } from '../src/shard/groups.js';
import { ipLimitsPerShard } from '../src/shard/ip-limits.js';
import { createShardTable, ShardTable } from '../src/shared/shard-table.js';
import { createLogger } from '../src/util/logger.js';
import type { HttpRequest, HttpResponse, us_socket_context_t } from '../src/util/uws.js';
import { newConnection, RateLimiter, type Connection, type Socket } from '../src/shard/connection.js';
import { ConnectionRegistry } from '../src/shard/registry.js';
import { judge, MAX_STEPS, STEP_CONNECTIONS, stepsFor, Sweeper, Verdict, type SweepClock, type SweepPolicy } from '../src/shard/sweep.js';

describe('subprotocol selection', () => {
  test('a client that offers none gets none (and speaks JSON)', () => {
    assert.equal(selectProtocol(''), '');
  });

  test("the client's first supported subprotocol is chosen, wherever it stands in the offer, spaces or not", () => {
    assert.equal(selectProtocol('ocs.v1.json'), 'ocs.v1.json');
    assert.equal(selectProtocol('ocs.v1.msgpack'), 'ocs.v1.msgpack');
    assert.equal(selectProtocol('ocs.v1.msgpack, ocs.v1.json'), 'ocs.v1.msgpack');
    assert.equal(selectProtocol('ocs.v1.json, ocs.v1.msgpack'), 'ocs.v1.json');
    assert.equal(selectProtocol('chat,ocs.v1.json,ocs.v1.msgpack'), 'ocs.v1.json');
    assert.equal(selectProtocol('  ocs.v1.json  '), 'ocs.v1.json');
  });

  test('an offer of neither ocs.v1.json nor ocs.v1.msgpack is refused (null), including near misses', () => {
    assert.equal(selectProtocol('chat, superchat'), null);
    assert.equal(selectProtocol('OCS.V1.JSON'), null);
    assert.equal(selectProtocol('ocs.v1.json2'), null);
    assert.equal(selectProtocol('ocs.v1.msgpack2'), null);
    assert.equal(selectProtocol(','), null);
  });
});

describe('rate limiter (token bucket)', () => {
  const fresh = (burst: number, now = 0): Connection => newConnection('s', 'u', null, burst, now);

  test('a new connection may send its whole burst at once, then is refused', () => {
    const limiter = new RateLimiter(10, 5);
    const conn = fresh(5);
    for (let i = 0; i < 5; i++) assert.ok(limiter.take(conn, 0), `frame ${i} of the burst`);
    assert.equal(limiter.take(conn, 0), false);
  });

  test('tokens come back at the sustained rate', () => {
    const limiter = new RateLimiter(10, 5); // one token per 100 ms
    const conn = fresh(5);
    for (let i = 0; i < 5; i++) limiter.take(conn, 0);
    assert.equal(limiter.take(conn, 50), false, 'half a token is not a frame');
    assert.ok(limiter.take(conn, 100));
    assert.equal(limiter.take(conn, 100), false);
  });

  test('a refused frame costs nothing: the partial token keeps accruing', () => {
    const limiter = new RateLimiter(10, 5);
    const conn = fresh(5);
    for (let i = 0; i < 5; i++) limiter.take(conn, 0);
    assert.equal(limiter.take(conn, 60), false);
    assert.ok(limiter.take(conn, 100), '60 ms + 40 ms make the token');
  });

  test('a wall clock stepped back 30 s refills nothing meanwhile, then the rate goes on from the new time (not 30 s of debt)', () => {
    const limiter = new RateLimiter(10, 5);
    const conn = fresh(5);
    for (let i = 0; i < 5; i++) limiter.take(conn, 1_000_000);
    const stepped = 1_000_000 - 30_000;
    assert.equal(limiter.take(conn, stepped), false, 'still empty: nothing refilled');
    assert.ok(limiter.take(conn, stepped + 100), '100 ms after the step: one token');
    assert.ok(limiter.take(conn, stepped + 1_000) && limiter.take(conn, stepped + 1_000));
  });

  test('a long silence refills to the burst, no further', () => {
    const limiter = new RateLimiter(10, 5);
    const conn = fresh(5);
    for (let i = 0; i < 5; i++) limiter.take(conn, 0);
    let allowed = 0;
    while (limiter.take(conn, 3_600_000)) allowed++;
    assert.equal(allowed, 5);
  });

  test('rate 0 means unlimited', () => {
    const limiter = new RateLimiter(0, 1);
    const conn = fresh(1);
    for (let i = 0; i < 10_000; i++) assert.ok(limiter.take(conn, 0));
  });
});

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
});

describe('connection registry', () => {
  /** The registry only stores sockets and connections: a stand-in socket suffices. */
  const socketOf = (conn: Connection): Socket => ({ getUserData: () => ({ conn }) }) as unknown as Socket;
  const connection = (sid: string, user: string | null): Connection => newConnection(sid, user, null, 1, 0);

  test('an open socket is counted but not addressable until announced', () => {
    const registry = new ConnectionRegistry();
    const conn = connection('s1', 'alice');
    const ws = socketOf(conn);
    registry.add(ws, conn);
    assert.equal(conn.ws, ws);
    assert.equal(registry.size, 1);
    assert.equal(registry.sid('s1'), undefined);
    assert.equal(registry.user('alice'), undefined);
    registry.announce(ws, conn);
    assert.equal(conn.announced, true);
    assert.equal(registry.sid('s1'), ws);
    assert.deepEqual([...registry.user('alice')!], [ws]);
  });

  test("a user's connections are found together, and the user's entry goes with the last one", () => {
    const registry = new ConnectionRegistry();
    const a = connection('s1', 'alice');
    const b = connection('s2', 'alice');
    const wsA = socketOf(a);
    const wsB = socketOf(b);
    for (const [ws, conn] of [[wsA, a], [wsB, b]] as const) {
      registry.add(ws, conn);
      registry.announce(ws, conn);
    }
    assert.equal(registry.user('alice')!.size, 2);
    registry.remove(wsA, a);
    assert.equal(registry.sid('s1'), undefined);
    assert.deepEqual([...registry.user('alice')!], [wsB]);
    registry.remove(wsB, b);
    assert.equal(registry.user('alice'), undefined, 'no empty entry is left behind');
    assert.equal(registry.size, 0);
  });

  test('removing a never-announced socket leaves the index alone', () => {
    const registry = new ConnectionRegistry();
    const announced = connection('s1', 'alice');
    const other = connection('s1', 'alice'); // same sid and user, never announced
    const ws = socketOf(announced);
    registry.add(ws, announced);
    registry.announce(ws, announced);
    const stray = socketOf(other);
    registry.add(stray, other);
    registry.remove(stray, other);
    assert.equal(registry.sid('s1'), ws);
    assert.deepEqual([...registry.user('alice')!], [ws]);
  });
});

describe('admin requests waiting for the broker', () => {
  /** A link whose broker never answers: its rings are real, nobody reads them. */
  function silentBroker(adminTimeoutMs: number): BrokerLink {
    const counters = new Float64Array(64);
    return new BrokerLink({
      shard: 0,
      brokerSlot: 1,
      doorbells: createDoorbells(2),
      toBroker: createRingBuffer(1 << 20),
      fromBroker: createRingBuffer(1 << 20),
      registry: new ConnectionRegistry(),
      groups: {} as LocalGroups, // no group message comes from a silent broker
      out: new Out(counters, createLogger('silent')),
      codec: {} as Codec, // nor a delivery
      counters,
      fail: failer(counters, new Out(counters, createLogger('silent'))),
      latency: new ThreadMetrics(),
      welcomed: () => {},
      report: () => {},
      adminTimeoutMs,
    });
  }

  test(`at most ${MAX_ADMIN_IN_FLIGHT} wait; the next is answered 503 unavailable at once, and shutting down answers the rest`, () => {
    const link = silentBroker(60_000);
    const answers: Array<[number, string]> = [];
    for (let i = 0; i <= MAX_ADMIN_IN_FLIGHT; i++) link.forward('get', '/admin/dlq', (status, body) => answers.push([status, body]));
    assert.equal(answers.length, 1);
    assert.equal(answers[0]![0], 503);
    assert.equal((JSON.parse(answers[0]![1]) as { code: string }).code, 'unavailable');
    link.stop();
    assert.equal(answers.length, MAX_ADMIN_IN_FLIGHT + 1, 'no request is left waiting (nor a timer holding the thread)');
  });

  test('one the broker does not answer in time gets 504 with a coded body, once', async () => {
    const link = silentBroker(50);
    const answers: number[] = [];
    let body = '';
    link.forward('get', '/admin/dlq', (status, text) => {
      answers.push(status);
      body = text;
    });
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.deepEqual(answers, [504]);
    assert.equal((JSON.parse(body) as { code: string }).code, 'timeout');
    link.stop();
    assert.deepEqual(answers, [504]);
  });
});

describe('a token check that throws', () => {
  const broken = {
    verify: () => {
      throw new Error('token check broke');
    },
    anonymous: () => assert.fail(),
  } as unknown as Authenticator;

  function admission(table: ShardTable): Admission {
    const counters = table.countersOf(0);
    return new Admission({
      shard: 0,
      table,
      counters,
      auth: broken,
      maxConnections: 10,
      authTimeout: 10,
      burst: 1,
      sidPrefix: 's',
      ipLimits: ipLimitsPerShard({ connection_attempts_per_ip: 0, connection_burst_per_ip: 1, unauthenticated_per_ip: 0, max_tracked_ips: 10 }, 1),
      trustedProxies: [],
      registry: new ConnectionRegistry(),
      interest: { joined: () => {}, left: () => {} },
      link: { presence: () => assert.fail('nobody is announced') },
      brokerBackpressure: { refuses: () => false },
      fail: failer(counters, new Out(counters, createLogger('silent'))),
      out: new Out(counters, createLogger('silent')),
      log: createLogger('silent'),
      isStopping: () => false,
    });
  }
  const settled = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

  test('on an auth frame: that connection gets err E_INTERNAL and close 1011; the shard carries on', async () => {
    const conn = newConnection('s1', null, null, 1, 0, Date.now() + 10_000);
    const sent: string[] = [];
    let closedWith = 0;
    const ws = {
      getUserData: () => ({ conn }),
      cork: (work: () => void) => work(),
      send: (frame: string) => sent.push(frame),
      end: (code: number) => {
        closedWith = code;
        conn.closed = true;
      },
    } as unknown as Socket;
    admission(new ShardTable(createShardTable(1))).authenticate(ws, conn, 'any.token.here', 'a1');
    await settled();
    assert.deepEqual(sent.map((f) => JSON.parse(f) as unknown), [{ op: 'err', code: 'E_INTERNAL', message: 'the token could not be checked', ref: 'a1' }]);
    assert.equal(closedWith, 1011);
    assert.equal(conn.user, null);
  });

  test('in ?token= before the upgrade: HTTP 500 E_INTERNAL, and the connection slot is given back', async () => {
    const table = new ShardTable(createShardTable(1));
    let status = '';
    let body = '';
    let upgraded = false;
    const res = {
      getRemoteAddressAsText: () => Buffer.from('10.0.0.1'),
      onAborted: () => res,
      cork: (work: () => void) => work(),
      writeStatus: (s: string) => ((status = s), res),
      writeHeader: () => res,
      end: (b: string) => ((body = b), res),
      upgrade: () => (upgraded = true),
    };
    const req = { getHeader: () => '', getQuery: () => 'token=any.token.here' };
    admission(table).upgrade(res as unknown as HttpResponse, req as unknown as HttpRequest, {} as us_socket_context_t);
    await settled();
    assert.equal(upgraded, false);
    assert.equal(status, '500 Internal Server Error');
    assert.equal((JSON.parse(body) as { code: string }).code, 'E_INTERNAL');
    assert.equal(table.totalConnections(), 0);
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

/**
 * The parts of a shard that decide without a socket: which subprotocol an upgrade gets, the
 * per-connection rate limit, the connection index the broker's deliveries use, the bounds on
 * admin requests, and what a token check that throws does (no real token check throws, so a
 * stand-in does). The sweep's are in sweep.test.ts; the shard as a whole is tested on real
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
      welcomeLimits: { messagesPerSecond: 100, burst: 200, ackIds: 128 },
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
      ipLimits: ipLimitsPerShard({ connection_attempts_per_ip: 0, connection_burst_per_ip: 1, unauthenticated_per_ip: 0, max_connections_per_ip: 0, max_tracked_ips: 10, http_requests_per_ip: 0, http_burst_per_ip: 1 }, 1),
      trustedProxies: [],
      ipv6PrefixLength: 64,
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
    const req = { getHeader: () => '', forEach: () => {}, getQuery: () => 'token=any.token.here' };
    admission(table).upgrade(res as unknown as HttpResponse, req as unknown as HttpRequest, {} as us_socket_context_t);
    await settled();
    assert.equal(upgraded, false);
    assert.equal(status, '500 Internal Server Error');
    assert.equal((JSON.parse(body) as { code: string }).code, 'E_INTERNAL');
    assert.equal(table.totalConnections(), 0);
  });
});

import assert from 'node:assert/strict';
import { BlockList, connect as netConnect } from 'node:net';
import fc from 'fast-check';
import { describe, test } from 'node:test';
import { connect, getJson, type TestClient } from './helpers/client.js';
import { startInProcess } from './helpers/server.js';
import { signToken } from './helpers/tokens.js';
import { IpLimiter, ipLimitsPerShard, type IpLimitOptions } from '../src/shard/ip-limits.js';
import { ClientAddresses, addressGroup, normalizeAddress } from '../src/shard/client-address.js';

/** A limiter that counts open connections, and limits plain HTTP requests, only when the test says so. */
function limiterOf(options: Omit<IpLimitOptions, 'maxOpen' | 'requestsPerSecond' | 'requestBurst'> & Partial<IpLimitOptions>): IpLimiter {
  return new IpLimiter({ maxOpen: 0, requestsPerSecond: 0, requestBurst: 1, ...options });
}

describe('per-IP connection limits', () => {
  test('an address may open `burst` connections at once, then `attemptsPerSecond` a second', () => {
    const limiter = limiterOf({ attemptsPerSecond: 10, burst: 3, maxUnauthenticated: 0, maxAddresses: 100 });
    for (let i = 0; i < 3; i++) assert.equal(limiter.admit('10.0.0.1', false, 1000), 'ok');
    assert.equal(limiter.admit('10.0.0.1', false, 1000), 'too_fast');
    assert.equal(limiter.admit('10.0.0.2', false, 1000), 'ok', 'another address has its own bucket');
    assert.equal(limiter.admit('10.0.0.1', false, 1100), 'ok', '100 ms refill one attempt at 10/s');
    assert.equal(limiter.admit('10.0.0.1', false, 1100), 'too_fast');
  });

  test('a wall clock stepped back 10 minutes neither refuses the address for 10 minutes nor keeps it in the table', () => {
    const limiter = limiterOf({ attemptsPerSecond: 10, burst: 3, maxUnauthenticated: 0, maxAddresses: 100 });
    const t = 10_000_000;
    for (let i = 0; i < 3; i++) assert.equal(limiter.admit('10.0.0.1', false, t), 'ok');
    const stepped = t - 600_000;
    assert.equal(limiter.admit('10.0.0.1', false, stepped), 'too_fast', 'nothing refilled by the step');
    assert.equal(limiter.admit('10.0.0.1', false, stepped + 100), 'ok', '100 ms after the step: one attempt');
    assert.equal(limiter.admit('10.0.0.1', false, stepped + 100), 'too_fast');
    limiter.sweep(stepped + 300);
    assert.equal(limiter.tracked, 1, 'not refilled yet');
    limiter.sweep(stepped + 400);
    assert.equal(limiter.tracked, 0, 'refilled and forgotten');
  });

  test('unauthenticated sockets per address are capped until they authenticate or close', () => {
    const limiter = limiterOf({ attemptsPerSecond: 0, burst: 1, maxUnauthenticated: 2, maxAddresses: 100 });
    assert.equal(limiter.admit('a', true, 0), 'ok');
    assert.equal(limiter.admit('a', true, 0), 'ok');
    assert.equal(limiter.admit('a', true, 0), 'too_many_unauthenticated');
    assert.equal(limiter.admit('a', false, 0), 'ok', 'a connection with credentials is not held back');
    limiter.authenticated('a');
    assert.equal(limiter.admit('a', true, 0), 'ok');
  });

  test('open connections per address are capped until one closes, and a refused upgrade gives both its places back', () => {
    const limiter = limiterOf({ attemptsPerSecond: 0, burst: 1, maxUnauthenticated: 5, maxOpen: 2, maxAddresses: 100 });
    assert.equal(limiter.admit('a', false, 0), 'ok');
    assert.equal(limiter.admit('a', true, 0), 'ok');
    assert.equal(limiter.admit('a', false, 0), 'too_many_connections');
    assert.equal(limiter.admit('b', false, 0), 'ok', 'another address has its own');
    limiter.authenticated('a');
    assert.equal(limiter.admit('a', false, 0), 'too_many_connections', 'authenticating frees the unauthenticated place, not the open one');
    limiter.closed('a');
    assert.equal(limiter.admit('a', true, 0), 'ok');
    limiter.cancel('a', true); // refused after all (server full, bad token)
    assert.equal(limiter.admit('a', false, 0), 'ok');
    limiter.closed('x'); // an address the table does not hold (swept, or from before a restart)
    limiter.closed('b');
    limiter.closed('b');
    assert.equal(limiter.admit('b', false, 0), 'ok', 'a close too many does not raise the cap');
    assert.equal(limiter.admit('b', false, 0), 'ok');
    assert.equal(limiter.admit('b', false, 0), 'too_many_connections');
  });

  test('an address with open connections stays in the table without filling it, and is swept once they close', () => {
    const limiter = limiterOf({ attemptsPerSecond: 0, burst: 1, maxUnauthenticated: 0, maxOpen: 10, maxAddresses: 2 });
    for (const ip of ['a', 'b', 'c', 'd']) assert.equal(limiter.admit(ip, false, 0), 'ok', `${ip}: held open connections do not fill the table`);
    limiter.sweep(0);
    assert.equal(limiter.tracked, 4, 'each still has a connection');
    for (const ip of ['a', 'b', 'c', 'd']) limiter.closed(ip);
    limiter.sweep(0);
    assert.equal(limiter.tracked, 0);
  });

  test('the table is bounded: idle addresses are swept, and a table full of busy ones refuses newcomers', () => {
    const limiter = limiterOf({ attemptsPerSecond: 1, burst: 1, maxUnauthenticated: 5, maxAddresses: 2 });
    assert.equal(limiter.admit('a', true, 0), 'ok');
    assert.equal(limiter.admit('b', false, 0), 'ok');
    assert.equal(limiter.admit('c', false, 0), 'table_full', 'a holds an unauthenticated socket, b has not refilled');
    assert.equal(limiter.admit('c', false, 1000), 'ok', 'b refilled and was swept');
    assert.ok(limiter.tracked <= 2);
  });

  test('plain HTTP requests have a bucket of their own: `requestBurst` at once, then `requestsPerSecond`, apart from connection attempts', () => {
    const limiter = limiterOf({ attemptsPerSecond: 10, burst: 2, maxUnauthenticated: 0, maxAddresses: 100, requestsPerSecond: 10, requestBurst: 3 });
    for (let i = 0; i < 3; i++) assert.equal(limiter.request('10.0.0.1', 1000), 'ok');
    assert.equal(limiter.request('10.0.0.1', 1000), 'too_fast');
    assert.equal(limiter.request('10.0.0.2', 1000), 'ok', 'another address has its own bucket');
    assert.equal(limiter.admit('10.0.0.1', false, 1000), 'ok', 'requests do not spend connection attempts');
    assert.equal(limiter.admit('10.0.0.1', false, 1000), 'ok');
    assert.equal(limiter.admit('10.0.0.1', false, 1000), 'too_fast');
    assert.equal(limiter.request('10.0.0.1', 1100), 'ok', '100 ms refill one request at 10/s');
    assert.equal(limiter.request('10.0.0.1', 1100), 'too_fast', '...and attempts did not spend requests');
    assert.equal(limiter.request('10.0.0.1', 1100 - 600_000), 'too_fast', 'a wall clock stepped back refills nothing...');
    assert.equal(limiter.request('10.0.0.1', 1100 - 600_000 + 100), 'ok', '...nor puts the address in debt');
  });

  test('an address is forgotten only once both its buckets are full; 0 requests a second tracks no address for requests', () => {
    const limiter = limiterOf({ attemptsPerSecond: 10, burst: 1, maxUnauthenticated: 0, maxAddresses: 1, requestsPerSecond: 1, requestBurst: 1 });
    assert.equal(limiter.request('a', 0), 'ok');
    assert.equal(limiter.request('b', 0), 'table_full', 'a has not refilled its request');
    assert.equal(limiter.sweep(500), 0);
    assert.equal(limiter.request('b', 1000), 'ok', 'a refilled and was swept');
    const unlimited = limiterOf({ attemptsPerSecond: 0, burst: 1, maxUnauthenticated: 0, maxAddresses: 1 });
    for (let i = 0; i < 1000; i++) assert.equal(unlimited.request(`10.0.${i >> 8}.${i & 255}`, 0), 'ok');
    assert.equal(unlimited.tracked, 0);
  });

  test('each shard enforces its share of the per-server figures, rounded up and never to 0 (unlimited)', () => {
    const limits = {
      connection_attempts_per_ip: 100,
      connection_burst_per_ip: 1000,
      unauthenticated_per_ip: 3,
      max_connections_per_ip: 9,
      max_tracked_ips: 5000,
      http_requests_per_ip: 100,
      http_burst_per_ip: 200,
    };
    assert.deepEqual(ipLimitsPerShard(limits, 4), { attemptsPerSecond: 25, burst: 250, maxUnauthenticated: 1, maxOpen: 3, maxAddresses: 5000, requestsPerSecond: 25, requestBurst: 50 });
    assert.deepEqual(ipLimitsPerShard({ ...limits, unauthenticated_per_ip: 1 }, 8).maxUnauthenticated, 1);
    assert.deepEqual(ipLimitsPerShard({ ...limits, connection_attempts_per_ip: 0, unauthenticated_per_ip: 0, max_connections_per_ip: 0, http_requests_per_ip: 0 }, 2), {
      attemptsPerSecond: 0,
      burst: 500,
      maxUnauthenticated: 0,
      maxOpen: 0,
      maxAddresses: 5000,
      requestsPerSecond: 0,
      requestBurst: 100,
    });
  });

  test('an address has one spelling: IPv6 compressed, IPv4-mapped IPv6 as IPv4, as uWS and proxies write them', () => {
    assert.equal(normalizeAddress('0000:0000:0000:0000:0000:ffff:7f00:0001'), '127.0.0.1');
    assert.equal(normalizeAddress('::ffff:10.1.2.3'), '10.1.2.3');
    assert.equal(normalizeAddress('2001:0DB8:0000:0000:0000:0000:0000:0001'), '2001:db8::1');
    assert.equal(normalizeAddress(' 10.0.0.7 '), '10.0.0.7');
    assert.equal(normalizeAddress('not an address'), 'not an address');
    assert.equal(normalizeAddress('fe80::1%eth0'), 'fe80::1', 'a zone, which the URL parser throws on, is dropped');
    assert.equal(normalizeAddress('203.0.113.5:5678'), '203.0.113.5', 'a port, as some proxies write it');
    assert.equal(normalizeAddress('[2001:db8::7]:443'), '2001:db8::7');
  });

  test('an IPv6 client counts under its /64 (ipv6_prefix_length), an IPv4 one under its address', () => {
    assert.equal(addressGroup('2001:db8:1:2:aaaa:bbbb:cccc:dddd', 64), '2001:db8:1:2::/64');
    assert.equal(addressGroup('2001:0DB8:0001:0002:0000:0000:0000:0001', 64), '2001:db8:1:2::/64', 'uWS spells it in full');
    assert.equal(addressGroup('2001:db8:ffff:ffff::1', 48), '2001:db8:ffff::/48');
    assert.equal(addressGroup('2001:db8:ffff:ffff::1', 50), '2001:db8:ffff:c000::/50', 'a prefix inside a group');
    assert.equal(addressGroup('2001:db8::1', 128), '2001:db8::1', '128: each address alone');
    assert.equal(addressGroup('0000:0000:0000:0000:0000:ffff:7f00:0001', 64), '127.0.0.1', 'IPv4-mapped: the IPv4 address');
    assert.equal(addressGroup('203.0.113.5', 64), '203.0.113.5');
    assert.equal(addressGroup('not an address', 64), 'not an address');
  });

  test('addressGroup never throws on what a header holds, and its key is the address\'s own subnet (checked against node:net\'s BlockList)', () => {
    fc.assert(fc.property(fc.string(), fc.integer({ min: 32, max: 128 }), (text, prefix) => typeof addressGroup(text, prefix) === 'string'));
    fc.assert(
      fc.property(fc.ipV6(), fc.ipV6(), fc.integer({ min: 32, max: 127 }), (a, b, prefix) => {
        const key = addressGroup(a, prefix);
        if (!key.includes('/')) return; // IPv4-mapped: counted as the IPv4 address
        const network = key.slice(0, key.indexOf('/'));
        const subnet = new BlockList();
        subnet.addSubnet(network, prefix, 'ipv6');
        assert.ok(subnet.check(a, 'ipv6'), `${a} is in ${key}`);
        assert.equal(addressGroup(network, prefix), key);
        if (addressGroup(b, prefix).includes('/')) assert.equal(subnet.check(b, 'ipv6'), addressGroup(b, prefix) === key, `${b} against ${key}`);
      }),
      { numRuns: 2000 },
    );
  });

  test('X-Forwarded-For is believed from trusted proxies only, and only its rightmost entry that is not one', () => {
    const clients = new ClientAddresses(['10.0.0.1', '10.0.0.2']);
    assert.equal(clients.of('10.0.0.1', '203.0.113.5'), '203.0.113.5');
    assert.equal(clients.of('10.0.0.1', '198.51.100.1, 203.0.113.5, 10.0.0.2'), '203.0.113.5', 'the client may prepend anything; the proxies append');
    assert.equal(clients.of('192.0.2.9', '203.0.113.5'), '192.0.2.9', 'an untrusted peer says what it likes');
    assert.equal(clients.of('10.0.0.1', ''), '10.0.0.1');
    assert.equal(clients.of('10.0.0.1', 'garbage, 203.0.113.5'), '203.0.113.5');
    assert.equal(clients.of('10.0.0.1', '203.0.113.5, garbage'), '10.0.0.1', 'a header the proxy did not write is not believed');
    assert.equal(new ClientAddresses([]).of('0000:0000:0000:0000:0000:ffff:7f00:0001', '203.0.113.5'), '0000:0000:0000:0000:0000:ffff:7f00:0001', 'no proxy configured: the peer as uWS spells it');
  });

  test('keys are addresses in a Map: odd strings are plain keys', () => {
    const limiter = limiterOf({ attemptsPerSecond: 1, burst: 1, maxUnauthenticated: 1, maxAddresses: 10 });
    for (const ip of ['__proto__', 'constructor', 'toString']) assert.equal(limiter.admit(ip, true, 0), 'ok');
    assert.equal(limiter.admit('__proto__', true, 5000), 'too_many_unauthenticated');
  });
});

/** A raw upgrade of an anonymous user with extra header lines: the first line of the answer, and what follows. */
function connectRaw(port: number, headers: string[]): Promise<string> {
  return new Promise((resolve) => {
    const socket = netConnect(port, '127.0.0.1', () => {
      socket.write(
        `GET /ws?user=raw${Math.random().toString(36).slice(2)} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${headers.map((h) => `${h}\r\n`).join('')}\r\n`,
      );
    });
    let text = '';
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (text.includes('\r\n\r\n')) {
        socket.destroy();
        resolve(text);
      }
    });
    socket.on('error', () => resolve(text));
    socket.on('close', () => resolve(text));
  });
}

/** The HTTP status and body code of a refused upgrade; undefined when it was accepted. */
async function refusal(port: number, query = '', headers?: Record<string, string>, localAddress?: string): Promise<{ status: number; code: string } | undefined> {
  try {
    const client = await connect(port, { query, ...(headers && { headers }), ...(localAddress && { localAddress }) });
    client.close();
    await client.closed;
    return undefined;
  } catch (err) {
    const { status, body } = err as { status: number; body: string };
    return { status, code: (JSON.parse(body) as { code: string }).code };
  }
}

describe('per-IP limits in front of the upgrade (one shard, so the figures are not divided)', () => {
  test('a burst of connection attempts beyond the limit gets HTTP 429 E_RATE_LIMITED, counted', async () => {
    const server = await startInProcess({
      websocket: { server: { shards: 1 }, limits: { connection_attempts_per_ip: 0.1, connection_burst_per_ip: 4, unauthenticated_per_ip: 0 } },
    });
    try {
      for (let i = 0; i < 4; i++) assert.equal(await refusal(server.port, `user=u${i}`), undefined, `attempt ${i} is within the burst`);
      assert.deepEqual(await refusal(server.port, 'user=u4'), { status: 429, code: 'E_RATE_LIMITED' });
      const { body } = await getJson(server.port, '/stats');
      assert.equal((body.totals as Record<string, number>).ip_refused_rate, 1);
    } finally {
      await server.close();
    }
  });

  test('behind a trusted proxy (websocket.server.trusted_proxies) each client counts under its X-Forwarded-For address; without it the header is ignored', async () => {
    const limits = { connection_attempts_per_ip: 0.1, connection_burst_per_ip: 2, unauthenticated_per_ip: 0 };
    const proxied = await startInProcess({ websocket: { server: { shards: 1, trusted_proxies: ['127.0.0.1'] }, limits } });
    try {
      const from = (address: string): Record<string, string> => ({ 'x-forwarded-for': address });
      for (let i = 0; i < 2; i++) assert.equal(await refusal(proxied.port, `user=a${i}`, from('203.0.113.1')), undefined);
      assert.deepEqual(await refusal(proxied.port, 'user=a2', from('203.0.113.1')), { status: 429, code: 'E_RATE_LIMITED' });
      assert.deepEqual(await refusal(proxied.port, 'user=a3', from('198.51.100.7, 203.0.113.1')), { status: 429, code: 'E_RATE_LIMITED' }, 'what the client prepends changes nothing');
      assert.equal(await refusal(proxied.port, 'user=b0', from('203.0.113.2')), undefined, 'another client behind the same proxy has its own limit');
      // Two header lines (a proxy that adds its own rather than appending): the last one counts, not the client's.
      const twoLines = await connectRaw(proxied.port, ['X-Forwarded-For: 198.51.100.50', 'X-Forwarded-For: 203.0.113.1']);
      assert.match(twoLines, /^HTTP\/1\.1 429/, 'the client\'s own line does not pick its address');
      // A zone in the header once threw in the upgrade handler and took the shard down.
      assert.match(await connectRaw(proxied.port, ['X-Forwarded-For: fe80::1%eth0']), /^HTTP\/1\.1 101/);
      assert.equal((await getJson(proxied.port, '/health')).body.status, 'ok');
    } finally {
      await proxied.close();
    }
    const direct = await startInProcess({ websocket: { server: { shards: 1 }, limits } });
    try {
      for (let i = 0; i < 2; i++) assert.equal(await refusal(direct.port, `user=c${i}`, { 'x-forwarded-for': `203.0.113.${10 + i}` }), undefined);
      assert.deepEqual(await refusal(direct.port, 'user=c2', { 'x-forwarded-for': '203.0.113.99' }), { status: 429, code: 'E_RATE_LIMITED' });
    } finally {
      await direct.close();
    }
  });

  test('unauthenticated sockets beyond the cap get 429, a connection with ?token= still gets in, and a place is given back on auth', async () => {
    const secret = 'ip-limits-test-secret-of-reasonable-length';
    const server = await startInProcess({
      websocket: {
        server: { shards: 1 },
        auth: { secret, allow_anonymous: false },
        limits: { connection_attempts_per_ip: 0, unauthenticated_per_ip: 2 },
      },
    });
    const sign = (sub: string): Promise<string> => signToken({}, { sub, secret });
    const held: TestClient[] = [];
    try {
      held.push(await connect(server.port), await connect(server.port));
      assert.deepEqual(await refusal(server.port), { status: 429, code: 'E_RATE_LIMITED' });
      const withToken = await connect(server.port, { query: `token=${await sign('alice')}` });
      assert.equal((await withToken.next((f) => f.op === 'welcome')).user, 'alice');
      held.push(withToken);
      // One of the waiting sockets authenticates: its place is free for the next newcomer.
      held[0]!.send({ op: 'auth', token: await sign('bob') });
      await held[0]!.next((f) => f.op === 'welcome');
      held.push(await connect(server.port));
      const { body } = await getJson(server.port, '/stats');
      assert.equal((body.totals as Record<string, number>).ip_refused_unauthenticated, 1);
    } finally {
      for (const client of held) client.close();
      await server.close();
    }
  });

  test('connections open at once from one address past max_connections_per_ip get 429; another address still gets in, and a close gives the place back', async () => {
    const server = await startInProcess({
      websocket: { server: { shards: 1 }, limits: { connection_attempts_per_ip: 0, unauthenticated_per_ip: 0, max_connections_per_ip: 2 } },
    });
    const from = (localAddress: string, user: string): Promise<TestClient> => connect(server.port, { query: `user=${user}`, localAddress });
    const held: TestClient[] = [];
    try {
      held.push(await from('127.0.0.2', 'a0'), await from('127.0.0.2', 'a1'));
      assert.deepEqual(await refusal(server.port, 'user=a2', undefined, '127.0.0.2'), { status: 429, code: 'E_RATE_LIMITED' });
      held.push(await from('127.0.0.3', 'b0'));
      // Admitted by the address, then refused (an anonymous id the server does not take): it keeps no place.
      for (let i = 0; i < 3; i++) assert.equal((await refusal(server.port, 'user=bad%20name', undefined, '127.0.0.3'))?.status, 401);
      held.push(await from('127.0.0.3', 'b1'));
      const closing = held.shift()!;
      closing.close();
      await closing.closed;
      // The server learns of the close a moment after the client does.
      let reopened: TestClient | undefined;
      for (let attempt = 0; attempt < 50 && reopened === undefined; attempt++) {
        reopened = await from('127.0.0.2', `a3-${attempt}`).catch(() => new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 20)));
      }
      assert.ok(reopened, 'a closed connection gives its place back');
      held.push(reopened);
      const { body } = await getJson(server.port, '/stats');
      assert.ok((body.totals as Record<string, number>).ip_refused_connections! >= 1);
      const metrics = await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text();
      assert.match(metrics, /ocs_connections_refused_total\{shard="0",reason="ip_connections"\} \d/, 'a reason of its own in /metrics');
    } finally {
      for (const client of held) client.close();
      await server.close();
    }
  });

  test('behind a trusted proxy, IPv6 clients of one /64 share their limits and another /64 has its own (ipv6_prefix_length)', async () => {
    const server = await startInProcess({
      websocket: {
        server: { shards: 1, trusted_proxies: ['127.0.0.1'] },
        limits: { connection_attempts_per_ip: 0, unauthenticated_per_ip: 0, max_connections_per_ip: 2 },
      },
    });
    const via = (address: string, user: string): Promise<TestClient> => connect(server.port, { query: `user=${user}`, headers: { 'x-forwarded-for': address } });
    const held: TestClient[] = [];
    try {
      held.push(await via('2001:db8:1:2::a', 'c0'), await via('2001:db8:1:2:ffff:ffff:ffff:ffff', 'c1'));
      assert.deepEqual(await refusal(server.port, 'user=c2', { 'x-forwarded-for': '2001:DB8:1:2::1234' }), { status: 429, code: 'E_RATE_LIMITED' }, 'a third address of the same /64');
      held.push(await via('2001:db8:1:3::a', 'd0'));
    } finally {
      for (const client of held) client.close();
      await server.close();
    }
    const perAddress = await startInProcess({
      websocket: {
        server: { shards: 1, trusted_proxies: ['127.0.0.1'] },
        limits: { connection_attempts_per_ip: 0, unauthenticated_per_ip: 0, max_connections_per_ip: 1, ipv6_prefix_length: 128 },
      },
    });
    try {
      const first = await connect(perAddress.port, { query: 'user=e0', headers: { 'x-forwarded-for': '2001:db8:1:2::a' } });
      held.push(first);
      assert.equal(await refusal(perAddress.port, 'user=e1', { 'x-forwarded-for': '2001:db8:1:2::b' }), undefined, '128: each address alone');
    } finally {
      for (const client of held) client.close();
      await perAddress.close();
    }
  });

});

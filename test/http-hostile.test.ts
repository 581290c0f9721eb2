/**
 * The HTTP endpoints against clients that misbehave at the socket level (src/util/http-answer.ts):
 * a reset while a large body is written, pipelined requests whose answers are never read, HEAD,
 * and one address sending more requests than its share (limits.http_requests_per_ip).
 * Real server process, raw sockets.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connect as connectWs, getJson } from './helpers/client.js';
import { startProcess, testConfig, type ServerProcess } from './helpers/server.js';
import { resetSocket } from './helpers/tcp-proxy.js';

const rssMiB = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('HTTP against clients that misbehave at the socket level', { skip: process.platform !== 'linux' && '/proc' }, () => {
  let server: ServerProcess;
  before(async () => {
    server = await startProcess(testConfig({ websocket: { monitoring: { metrics_collection_interval: 0.2 } } }));
  });
  after(async () => {
    assert.equal(await server.stop('SIGTERM'), 0, server.stderr());
  });

  test('clients resetting their sockets while /dashboard and /metrics are written (bodies larger than a socket takes at once) never end the process', async () => {
    let requests = 0;
    const until = Date.now() + 2_000;
    const loop = async (path: string): Promise<void> => {
      while (Date.now() < until && server.child.exitCode === null) {
        await new Promise<void>((resolve) => {
          const socket = connect(server.port, '127.0.0.1', () => {
            requests++;
            socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
            setTimeout(() => resetSocket(socket), Math.random() * 3);
          });
          socket.on('error', () => {});
          socket.on('close', () => resolve());
        });
      }
    };
    await Promise.all(Array.from({ length: 16 }, (_, i) => loop(i % 2 === 0 ? '/dashboard' : '/metrics')));
    assert.equal(server.child.exitCode, null, `the process ended after ${requests} requests: ${server.stderr().slice(-500)}`);
    assert.equal((await getJson(server.port, '/health')).status, 200);
    assert.ok(requests > 200, `${requests} requests`);
  });

  test('HEAD answers the headers without a body, and the keep-alive connection goes on', async () => {
    const sockets = new Set<Socket>();
    const once = (method: string, path: string, agent: import('node:http').Agent): Promise<{ status: number; body: string }> =>
      new Promise((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port: server.port, method, path, agent }, (res) => {
          let body = '';
          res.on('data', (chunk: Buffer) => (body += chunk.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, body }));
        });
        req.on('socket', (s) => sockets.add(s as Socket));
        req.on('error', reject);
        req.end();
      });
    const { Agent } = await import('node:http');
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (const path of ['/health', '/stats', '/metrics', '/dashboard']) {
        const head = await once('HEAD', path, agent);
        assert.deepEqual([head.status, head.body], [200, ''], path);
        assert.equal((await once('GET', path, agent)).status, 200, `GET ${path} after HEAD on the same connection`);
      }
      assert.equal(sockets.size, 1, 'one keep-alive connection throughout');
    } finally {
      agent.destroy();
    }
  });

  test('a client pipelining requests and never reading the answers does not grow the server\'s memory, and others are answered', async () => {
    const before = rssMiB(server.child.pid!);
    const requests = Buffer.from('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(1000));
    const greedy = Array.from({ length: 4 }, () => {
      const socket = connect(server.port, '127.0.0.1');
      socket.pause(); // never reads
      socket.on('error', () => {});
      let open = true;
      socket.on('close', () => (open = false));
      const pump = (): void => {
        while (open && socket.write(requests));
      };
      socket.on('connect', pump);
      socket.on('drain', pump);
      return socket;
    });
    await sleep(3_000);
    const started = Date.now();
    assert.equal((await getJson(server.port, '/health')).status, 200);
    const took = Date.now() - started;
    const grew = rssMiB(server.child.pid!) - before;
    for (const socket of greedy) socket.destroy();
    // Without the bound it grew 12 MB a second per connection; the figures are for the note, the bounds generous.
    assert.ok(grew < 64, `the server grew by ${grew.toFixed(0)} MiB`);
    assert.ok(took < 1_000, `/health took ${took} ms`);
  });
});

/** A GET from `localAddress` (any of 127.0.0.0/8 is this host): status, Retry-After and the body's code. */
function getFrom(port: number, path: string, localAddress: string): Promise<{ status: number; retryAfter?: string; code?: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, localAddress, agent: false }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString()));
      res.on('end', () => {
        const code = res.statusCode === 200 ? undefined : (JSON.parse(text) as { code: string }).code;
        resolve({ status: res.statusCode ?? 0, ...(res.headers['retry-after'] !== undefined && { retryAfter: res.headers['retry-after'] }), ...(code && { code }) });
      });
    });
    req.once('error', reject);
    req.end();
  });
}

describe('HTTP requests per address (limits.http_requests_per_ip)', () => {
  test('past its burst an address gets 429 rate_limited with Retry-After on every route, counted; another address, and its own WebSocket upgrades, are not held back; a second later it is answered again', async () => {
    const server = await startProcess(
      testConfig({ websocket: { server: { shards: 1 }, limits: { http_requests_per_ip: 1, http_burst_per_ip: 3 }, monitoring: { metrics_collection_interval: 0.2 } } }),
    );
    try {
      for (const path of ['/health', '/stats', '/no-such-path']) assert.notEqual((await getFrom(server.port, path, '127.0.0.2')).status, 429, path);
      for (const path of ['/metrics', '/health', '/dashboard', '/admin/dlq', '/ws']) {
        assert.deepEqual(await getFrom(server.port, path, '127.0.0.2'), { status: 429, retryAfter: '1', code: 'rate_limited' }, path);
      }
      assert.equal((await getFrom(server.port, '/health', '127.0.0.3')).status, 200, 'another address has its own share');
      const ws = await connectWs(server.port, { query: 'user=same-address', localAddress: '127.0.0.2' });
      ws.close();
      await sleep(1_100);
      assert.equal((await getFrom(server.port, '/health', '127.0.0.2')).status, 200, 'refilled at 1 a second');
      const metrics = await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text();
      assert.match(metrics, /ocs_http_requests_refused_total\{shard="0",reason="ip_rate"\} 5\n/);
    } finally {
      assert.equal(await server.stop('SIGTERM'), 0, server.stderr());
    }
  });
});

/**
 * TLS on the server's own port (websocket.server.tls): wss:// for clients and https:// for the
 * HTTP endpoints, on every shard; a start-up that names the key when the files cannot serve;
 * and what a client that does not speak TLS, or never finishes its handshake, gets.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:https';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pino } from 'pino';
import WebSocket from 'ws';
import { OcsClient } from '../src/client/index.js';
import { loadConfig } from '../src/config/load.js';
import { createServer, type RunningServer } from '../src/index.js';
import { HAVE_OPENSSL, selfSigned, type Certificate } from '../tools/lib/self-signed.js';
import { connectWs } from '../tools/wsclient/client.js';
import { member, onShard, type Frame, type TestClient } from './helpers/client.js';
import { until, untilTrue } from './helpers/messaging.js';
import { runMain, startInProcess, testConfig, writeConfig } from './helpers/server.js';

const run = promisify(execFile);
const LOADTEST = fileURLToPath(new URL('../tools/loadtest/main.js', import.meta.url));
const skip = !HAVE_OPENSSL && 'no openssl command to make a certificate (Debian: apt-get install openssl)';
if (skip) console.warn(`tls tests skipped: ${skip}`);

const tlsConfig = (cert: Certificate, passphrase = '', server: Record<string, unknown> = {}) => ({
  websocket: { server: { ...server, tls: { cert_file: cert.certFile, key_file: cert.keyFile, passphrase } } },
});

function httpsGet(port: number, path: string, ca: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path, ca, agent: false }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).once('error', reject);
  });
}

/** Writes `bytes` on a plain TCP connection; resolves with what came back and how long the server took to close it. */
function rawExchange(port: number, bytes: Buffer | null): Promise<{ answer: string; closedAfterMs: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    let answer = '';
    const socket = tcpConnect(port, '127.0.0.1', () => bytes && socket.write(bytes));
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
    socket.on('error', reject);
    socket.on('close', () => resolve({ answer, closedAfterMs: Date.now() - started }));
  });
}

describe('a two-shard server with a certificate', { skip }, () => {
  let cert: Certificate;
  let server: RunningServer;
  const open: TestClient[] = [];
  // Opened before the other tests, which run beside them (uWS gives up on a handshake after 10 s).
  let stalled: Promise<Array<{ closedAfterMs: number }>>;
  let idlePending: Promise<{ closedAfterMs: number }>;
  const tlsMember = async (user: string, groups: string[] = []): Promise<TestClient & { welcome: Frame }> => {
    const client = await member(server.port, user, groups, { ca: cert.ca });
    open.push(client);
    return client;
  };

  before(async () => {
    cert = selfSigned();
    server = await startInProcess(tlsConfig(cert));
    stalled = Promise.all(Array.from({ length: 200 }, () => rawExchange(server.port, null)));
    idlePending = rawExchange(server.port, null);
    stalled.catch(() => {});
    idlePending.catch(() => {});
  });
  after(async () => {
    for (const client of open) client.close();
    await server?.close();
  });

  test('every shard speaks wss:// on the one port: welcome, and a pub from one shard reaches a member on the other', async () => {
    const onZero = await onShard(0, (i) => tlsMember(`zero${i}`, ['room']));
    const onOne = await onShard(1, (i) => tlsMember(`one${i}`, ['room']));
    onZero.send({ op: 'pub', group: 'room', data: { text: 'over TLS' }, ref: 'p' });
    const msg = await onOne.next((f) => f.op === 'msg');
    assert.deepEqual(msg.data, { text: 'over TLS' });
    assert.equal((await onZero.next((f) => f.op === 'ack')).ref, 'p');
  });

  test('the HTTP endpoints answer over https:// on the same port (/health for a load balancer)', async () => {
    const health = await httpsGet(server.port, '/health', cert.ca);
    assert.equal(health.status, 200);
    assert.equal((JSON.parse(health.body) as { status: string }).status, 'ok');
  });

  test('the client SDK connects over wss:// with a WebSocket class that trusts the certificate', async () => {
    const ca = cert.ca;
    class TrustingWebSocket extends WebSocket {
      constructor(url: string, protocols?: string | string[]) {
        super(url, protocols, { ca });
      }
    }
    const client = new OcsClient({ url: `wss://127.0.0.1:${server.port}/ws`, user: 'sdk', WebSocket: TrustingWebSocket });
    try {
      await client.connect();
      await client.join('sdk-room');
      const got = new Promise<unknown>((resolve) => client.on('message', (m: { data: unknown }) => resolve(m.data)));
      await client.publish('sdk-room', { n: 1 });
      assert.deepEqual(await got, { n: 1 });
    } finally {
      await client.close();
    }
  });

  test("the benchmarks' raw-socket client (tools/wsclient) speaks wss:// too", async () => {
    const welcome = await new Promise<string>((resolve, reject) => {
      const ws = connectWs({
        host: '127.0.0.1',
        port: server.port,
        path: '/ws?user=raw',
        tls: { ca: cert.ca },
        onMessage: (payload) => {
          resolve(payload.toString());
          ws.close();
        },
        onError: reject,
      });
    });
    assert.equal((JSON.parse(welcome) as Frame).op, 'welcome');
  });

  test('npm run loadtest -- --tls runs a scenario over wss:// and reads the server\'s /stats over https:// (NODE_EXTRA_CA_CERTS)', async () => {
    const output = join(mkdtempSync(join(tmpdir(), 'ocs-loadtest-tls-')), 'report.json');
    const args = ['--host', '127.0.0.1', '--port', String(server.port), '--tls', '--scenario', 'baseline', '--connections', '20', '--duration', '2', '--warmup', '1', '--drain', '1', '--threads', '1', '--no-html', '--output', output];
    await run(process.execPath, [LOADTEST, ...args], { env: { ...process.env, NODE_EXTRA_CA_CERTS: cert.certFile }, timeout: 90_000 });
    const report = JSON.parse(readFileSync(output, 'utf8')) as { scenarios: Array<{ status: string; connections: { ok: number }; server: { stats: { available: boolean; reason?: string } } }> };
    const [scenario] = report.scenarios;
    assert.equal(scenario!.status, 'ok');
    assert.equal(scenario!.connections.ok, 20);
    assert.equal(scenario!.server.stats.available, true, scenario!.server.stats.reason);
  });

  test('a client that does not speak TLS gets no answer and is closed at once; garbage likewise; the server goes on', async () => {
    const plain = await rawExchange(server.port, Buffer.from('GET /health HTTP/1.1\r\nHost: x\r\n\r\n'));
    assert.equal(plain.answer, '', 'no plain-text HTTP answer on the TLS port');
    assert.ok(plain.closedAfterMs < 2_000, `closed after ${plain.closedAfterMs} ms`);
    const garbage = await rawExchange(server.port, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) & 0xff)));
    assert.ok(garbage.closedAfterMs < 2_000, `closed after ${garbage.closedAfterMs} ms`);
    await assert.rejects(member(server.port, 'plain-ws'), 'a ws:// client cannot open');
    assert.equal((await tlsMember('after-garbage')).welcome.op, 'welcome');
  });

  test('a client that connects and never starts its handshake is closed by the server (within 15 s); 200 of them, held since the first test, kept no one out', async () => {
    assert.equal((await tlsMember('beside-stalled')).welcome.op, 'welcome', 'welcomed while they are held');
    const idle = await idlePending;
    assert.ok(idle.closedAfterMs < 15_000, `closed after ${idle.closedAfterMs} ms`);
    for (const s of await stalled) assert.ok(s.closedAfterMs < 15_000, `closed after ${s.closedAfterMs} ms`);
  });
});

describe('start-up refuses TLS files that cannot serve, naming the key', { skip }, () => {
  test('an encrypted key opens with its passphrase: the server starts and welcomes a wss:// client', async () => {
    const cert = selfSigned('open sesame');
    const server = await startInProcess(tlsConfig(cert, 'open sesame', { shards: 1 }));
    try {
      const client = await member(server.port, 'locked', [], { ca: cert.ca });
      assert.equal(client.welcome.op, 'welcome');
      client.close();
    } finally {
      await server.close();
    }
  });

  test('a shard that restarts after its certificate file was deleted logs the file by name, and is back once the file is', async () => {
    const cert = selfSigned();
    const lines: string[] = [];
    const logger = pino({ level: 'error' }, { write: (line: string) => void lines.push(line) });
    const server = await createServer({ file: writeConfig({}), env: {}, overrides: testConfig(tlsConfig(cert, '', { shards: 2 })), logger });
    try {
      const pem = readFileSync(cert.certFile);
      rmSync(cert.certFile);
      server.injectShardCrash(0);
      const failed = await until(() => lines.find((line) => line.includes('shard restart failed')), 'the failed restart');
      assert.match(failed, /websocket\.server\.tls\.cert_file: cannot read \S+cert\.pem: ENOENT/);
      writeFileSync(cert.certFile, pem);
      await untilTrue('shard 0 back', () => server.table.isUp(0), 15_000);
      const client = await onShard(0, () => member(server.port, 'after', [], { ca: cert.ca }));
      client.close();
    } finally {
      await server.close();
    }
  });

  const refusals: Array<[string, () => Record<string, unknown>, RegExp]> = [
    ['a certificate without a key', () => ({ websocket: { server: { tls: { cert_file: selfSigned().certFile } } } }), /websocket\.server\.tls: cert_file and key_file go together \(key_file is empty\)/],
    ['a missing certificate file', () => tlsConfig({ ...selfSigned(), certFile: '/nonexistent/cert.pem' }), /websocket\.server\.tls\.cert_file: cannot read \/nonexistent\/cert\.pem: ENOENT/],
    ['a key that is not the certificate\'s', () => tlsConfig({ ...selfSigned(), keyFile: selfSigned().keyFile }), /websocket\.server\.tls: .* cannot serve TLS: .*key values mismatch/],
    ['a wrong passphrase', () => tlsConfig(selfSigned('right'), 'wrong'), /websocket\.server\.tls: .* cannot serve TLS: .*(bad decrypt|BAD_DECRYPT)/i],
    ['a certificate file that is not PEM', () => {
      const cert = selfSigned();
      writeFileSync(cert.certFile, 'not a certificate');
      return tlsConfig(cert);
    }, /websocket\.server\.tls: .* cannot serve TLS/],
  ];
  for (const [what, config, message] of refusals) {
    test(`${what}: E_CONFIG`, () => {
      assert.throws(() => loadConfig({ overrides: config() }), (err: Error & { code?: string }) => err.code === 'E_CONFIG' && message.test(err.message));
    });
  }

  test('npm start with such a file exits with that one line, before any thread starts', async () => {
    const file = writeConfig({ websocket: { server: { port: 0, tls: { cert_file: '/nonexistent/cert.pem', key_file: '/nonexistent/key.pem' } } } });
    const result = await runMain(['--config', file]);
    assert.equal(result.code, 2, 'a config error: pm2 does not restart it');
    assert.match(result.stderr, /ocs-realtime: config: websocket\.server\.tls\.cert_file: cannot read \/nonexistent\/cert\.pem: ENOENT/);
  });
});

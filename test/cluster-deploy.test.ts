/**
 * Deploying a cluster: three nodes behind nginx on one public port (deploy/nginx/ocs-realtime.conf
 * as shipped, addresses filled in), a node that drains taken out without the others' clients
 * noticing; two nodes sharing one port on one host (as pm2 instances do); and the load tester
 * spreading its connections over several nodes (`--host A,B`).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseHosts } from '../tools/loadtest/cli.js';
import { freePort } from '../tools/lib/free-port.js';
import { sleep } from './helpers/broker.js';
import { getJson, member, type Frame, type TestClient } from './helpers/client.js';
import { announceSkip, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { runCommand, startProcess, testConfig, type ServerProcess } from './helpers/server.js';

const redisSkip = announceSkip('cluster-deploy.test');
const NGINX = '/usr/sbin/nginx';
const nginxMissing = spawnSync(NGINX, ['-v']).status === 0 ? false : `SKIPPED: ${NGINX} is not installed (apt-get install -y nginx); the nginx example was not tested`;
if (nginxMissing && !redisSkip) process.stderr.write(`\n*** cluster-deploy.test: ${nginxMissing} ***\n\n`);
const EXAMPLE = fileURLToPath(new URL('../../deploy/nginx/ocs-realtime.conf', import.meta.url));
const LOADTEST = fileURLToPath(new URL('../tools/loadtest/main.js', import.meta.url));
/** The status of a GET of `path` sent as written (no URL parser in between). */
function rawGet(port: number, path: string): Promise<{ status: number }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0 });
    });
    req.once('error', reject);
    req.end();
  });
}

function nodeConfig(url: string, port = 0): Record<string, unknown> {
  return testConfig({
    websocket: { server: { shards: 1, port }, groups: { require_membership: false }, limits: { connection_attempts_per_ip: 0, unauthenticated_per_ip: 0 } },
    cluster: { redis_url: url, presence_ttl: 3, sweep_interval: 0.05 },
  });
}

describe('three nodes behind nginx (deploy/nginx/ocs-realtime.conf)', { skip: redisSkip || nginxMissing }, () => {
  let redis: PrivateRedis;
  const nodes: ServerProcess[] = [];
  let nginx: ChildProcess;
  let port = 0;
  let dir = '';
  const open: TestClient[] = [];

  before(async () => {
    redis = await startPrivateRedis();
    for (let i = 0; i < 3; i++) nodes.push(await startProcess(nodeConfig(redis.url)));
    port = await freePort();
    dir = mkdtempSync(join(tmpdir(), 'ocs-nginx-'));
    chmodSync(dir, 0o777); // nginx's workers run as nobody
    // The example as shipped, with this test's addresses: the only lines changed.
    let example = readFileSync(EXAMPLE, 'utf8').replace(/listen 80;/, `listen 127.0.0.1:${port};`).replace('/var/log/nginx/access.log', `${dir}/access.log`);
    nodes.forEach((node, i) => (example = example.replace(`server 10.0.0.${i + 1}:8765`, `server 127.0.0.1:${node.port}`)));
    assert.doesNotMatch(example, /10\.0\.0\./);
    writeFileSync(join(dir, 'ocs-realtime.conf'), example);
    writeFileSync(
      join(dir, 'nginx.conf'),
      `worker_processes 1;\npid ${dir}/nginx.pid;\nerror_log stderr warn;\nevents { worker_connections 1024; }\n` +
        `http {\n  access_log off;\n  client_body_temp_path ${dir}/body;\n  proxy_temp_path ${dir}/proxy;\n  fastcgi_temp_path ${dir}/fastcgi;\n` +
        `  uwsgi_temp_path ${dir}/uwsgi;\n  scgi_temp_path ${dir}/scgi;\n  include ${dir}/ocs-realtime.conf;\n}\n`,
    );
    const check = await runCommand(NGINX, ['-t', '-p', dir, '-c', join(dir, 'nginx.conf')]);
    assert.equal(check.code, 0, `nginx -t: ${check.stderr}`);
    nginx = spawn(NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'inherit'] });
    for (let i = 0; i < 100; i++) {
      if ((await getJson(port, '/health').catch(() => null))?.status === 200) break;
      await sleep(50);
    }
  });
  after(async () => {
    for (const client of open) client.close();
    if (nginx && nginx.exitCode === null) {
      nginx.kill('SIGTERM');
      await new Promise((r) => nginx.once('exit', r));
    }
    await Promise.all(nodes.map((node) => (node.child.exitCode === null ? node.stop() : null)));
    await redis?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('/health answers through nginx as a health check can use it', async () => {
    const { status, body } = await getJson(port, '/health');
    assert.equal(status, 200);
    assert.equal(body.status, 'ok');
    assert.equal((body.cluster as { redis: string }).redis, 'up');
  });

  test('nginx passes on /ws and /health only, as it reads them: the nodes\' admin API is out of reach through it, and its log keeps no query string', async () => {
    // The review's path: nginx once matched it to `location /ws` and passed it on as written.
    for (const path of ['/admin/dlq', '/admin/%2E%2E/ws\\..\\admin\\dlq', '/ws/../admin/dlq', '/ws/x', '/stats']) {
      assert.equal((await rawGet(port, path)).status, 404, path);
    }
    const logged = await member(port, 'logged');
    logged.close();
    await logged.closed;
    let log = '';
    for (let i = 0; i < 50 && !log.includes('/ws'); i++, await sleep(20)) log = readFileSync(join(dir, 'access.log'), 'utf8');
    assert.match(log, /"GET \/ws HTTP\/1\.1" 101/);
    assert.doesNotMatch(log, /user=logged/, 'a token in the query string would be in the log');
  });

  test('clients on one public port land on every node and reach each other; a draining node is taken out, the others\' clients stay', async () => {
    const clients: Array<TestClient & { welcome: Frame }> = [];
    for (let i = 0; i < 30; i++) clients.push(await member(port, `n${i}`, ['hall']));
    open.push(...clients);
    // Which node holds each (least_conn spreads them): by the node's own connection count.
    const counts = await Promise.all(nodes.map(async (node) => (await getJson(node.port, '/health')).body.connections as number));
    assert.ok(counts.every((count) => count >= 5), `every node got clients: ${counts}`);
    clients[0]!.send({ op: 'pub', group: 'hall', data: { hello: 1 } });
    for (const client of clients) assert.deepEqual((await client.next((f) => f.op === 'msg')).data, { hello: 1 });

    // Node 2 drains: SIGTERM, its clients are closed (1001, or 1012 for a restart) and it refuses new upgrades.
    const closes: number[] = [];
    for (const client of clients) void client.closed.then(({ code }) => closes.push(code));
    await nodes[2]!.stop('SIGTERM');
    await sleep(300);
    assert.ok(closes.length >= 5, `the draining node's clients were closed (${closes.length})`);
    assert.ok(closes.every((code) => code === 1001 || code === 1012), `closed as going away or restarting: ${closes}`);
    // They reconnect through nginx and land on the nodes left; nobody else was disturbed.
    const back: TestClient[] = [];
    for (let i = 0; i < closes.length; i++) back.push(await member(port, `again${i}`, ['hall']));
    open.push(...back);
    const survivors = clients.filter((client) => client.ws.readyState === client.ws.OPEN);
    assert.equal(survivors.length, clients.length - closes.length);
    back[0]!.send({ op: 'pub', group: 'hall', data: { after: 1 } });
    for (const client of [...survivors, ...back]) assert.deepEqual((await client.next((f) => f.op === 'msg' && (f.data as { after?: number }).after === 1)).data, { after: 1 });
    // A send across the remaining nodes, through the one port.
    back[0]!.send({ op: 'send', to: 'n1', data: { direct: 1 }, ref: 'd' });
    const target = survivors.find((client) => (client as { welcome: Frame }).welcome.user === 'n1') ?? null;
    if (target) assert.deepEqual((await target.next((f) => f.ackReq === true)).data, { direct: 1 });
  });
});

describe('two nodes sharing one port on one host (pm2 instances)', { skip: redisSkip }, () => {
  test('both bind it; connections spread over both; a pub crosses from one to the other', async () => {
    const redis = await startPrivateRedis();
    const port = await freePort();
    const nodes = [await startProcess(nodeConfig(redis.url, port)), await startProcess(nodeConfig(redis.url, port))];
    const clients: Array<TestClient & { welcome: Frame }> = [];
    try {
      for (let i = 0; i < 20; i++) clients.push(await member(port, `s${i}`, ['shared']));
      // A session id starts with its process's instance id: the kernel gave connections to both.
      const processes = new Set(clients.map((client) => String(client.welcome.sid).split('.')[0]));
      assert.equal(processes.size, 2, 'connections landed on both processes');
      clients[0]!.send({ op: 'pub', group: 'shared', data: 'x' });
      for (const client of clients) assert.equal((await client.next((f) => f.op === 'msg')).data, 'x');
    } finally {
      for (const client of clients) client.close();
      await Promise.all(nodes.map((node) => node.stop()));
      await redis.stop();
    }
  });
});

describe('npm run loadtest -- --host A,B', { skip: redisSkip }, () => {
  test('parses the node list', () => {
    assert.deepEqual(parseHosts('a,b:9000,[::1]:7', 8765), [
      { host: 'a', port: 8765 },
      { host: 'b', port: 9000 },
      { host: '::1', port: 7 },
    ]);
    assert.throws(() => parseHosts('a:0', 1), /bad port/);
    assert.throws(() => parseHosts('a:b:c', 1), /not HOST or HOST:PORT/);
  });

  test('spreads its connections over the nodes, and nothing is lost across them', async () => {
    const redis = await startPrivateRedis();
    const nodes = [await startProcess(nodeConfig(redis.url)), await startProcess(nodeConfig(redis.url))];
    const dir = mkdtempSync(join(tmpdir(), 'ocs-lt-spread-'));
    try {
      const out = join(dir, 'r.json');
      const hosts = nodes.map((node) => `127.0.0.1:${node.port}`).join(',');
      const result = await runCommand(
        process.execPath,
        [LOADTEST, '--host', hosts, '--scenario', 'baseline', '--connections', '20', '--duration', '2', '--warmup', '0', '--drain', '1', '--threads', '1', '--no-html', '--output', out],
        {},
        120_000,
      );
      assert.equal(result.code, 0, result.stderr);
      const report = JSON.parse(readFileSync(out, 'utf8')) as { target: { host: string }; scenarios: Array<{ delivery: { pubLost: number; pubExpected: number }; connections: { ok: number } }> };
      assert.equal(report.target.host, hosts);
      const s = report.scenarios[0]!;
      assert.equal(s.connections.ok, 20);
      assert.ok(s.delivery.pubExpected > 0);
      assert.equal(s.delivery.pubLost, 0, 'no pub lost across the nodes');
      for (const node of nodes) {
        const { body } = await getJson(node.port, '/stats');
        assert.ok((body.totals as { connections_opened: number }).connections_opened >= 10, 'each node took its share');
      }
    } finally {
      await Promise.all(nodes.map((node) => node.stop()));
      await redis.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

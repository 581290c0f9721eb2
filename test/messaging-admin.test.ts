import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { member } from './helpers/client.js';
import { adminJson, nextMsgs, settle, until } from './helpers/messaging.js';
import { startInProcess } from './helpers/server.js';
import type { RunningServer } from '../src/index.js';

const DLQ_CLI = fileURLToPath(new URL('../scripts/dlq.js', import.meta.url));

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [DLQ_CLI, ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('processors run before routing', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess();
    server.registerProcessor('shout', (m) => ({ ...m, data: { ...(m.data as object), text: String((m.data as { text: string }).text).toUpperCase() } }));
    server.registerProcessor('secret', () => null);
    server.registerProcessor('broken', () => {
      throw new Error('cannot handle this');
    });
    server.registerProcessor('slow', async (m) => ({ ...m, pri: 2 }));
  });
  after(() => server.close());

  test('a processor transforms pub and send messages of its type; other messages are untouched', async () => {
    const a = await member(server.port, 'pa', ['room']);
    const b = await member(server.port, 'pb', ['room']);
    a.send({ op: 'pub', group: 'room', data: { type: 'shout', text: 'hello' }, ref: 'p' });
    const ack = await a.next((f) => f.op === 'ack' && f.ref === 'p');
    for (const c of [a, b]) {
      const msg = await c.next((f) => f.op === 'msg');
      assert.equal(msg.id, ack.id);
      assert.deepEqual(msg.data, { type: 'shout', text: 'HELLO' });
    }
    a.send({ op: 'pub', group: 'room', data: { type: 'plain', text: 'as is' } });
    assert.deepEqual((await b.next((f) => f.op === 'msg')).data, { type: 'plain', text: 'as is' });
    a.send({ op: 'send', to: 'pb', data: { type: 'shout', text: 'direct' }, ref: 's' });
    await a.next((f) => f.op === 'ack' && f.ref === 's');
    const [direct] = await nextMsgs(b, 1);
    assert.deepEqual(direct!.data, { type: 'shout', text: 'DIRECT' });
    b.send({ op: 'ack', id: direct!.id });
    a.send({ op: 'send', to: 'pb', data: { type: 'slow' }, ref: 'async' });
    await a.next((f) => f.op === 'ack' && f.ref === 'async');
    const [raised] = await nextMsgs(b, 1);
    assert.equal(raised!.pri, 2, 'an async processor may change the priority');
    b.send({ op: 'ack', id: raised!.id });
    a.close();
    b.close();
  });

  test('a processor that returns null drops the message', async () => {
    const a = await member(server.port, 'da', ['hush']);
    a.send({ op: 'pub', group: 'hush', data: { type: 'secret' }, ref: 'x' });
    await a.next((f) => f.op === 'ack' && f.ref === 'x');
    a.send({ op: 'pub', group: 'hush', data: 'after' });
    assert.equal((await a.next((f) => f.op === 'msg')).data, 'after', 'the dropped message never arrived');
    a.close();
  });

  test('a processor that throws sends the message to the dead-letter queue with the reason; the shard keeps serving', async () => {
    const a = await member(server.port, 'ta', ['boom']);
    a.send({ op: 'send', to: 'tb', data: { type: 'broken', n: 1 }, ref: 'b' });
    const ack = await a.next((f) => f.op === 'ack' && f.ref === 'b');
    a.send({ op: 'pub', group: 'boom', data: { type: 'broken', n: 2 }, ref: 'bp' });
    await a.next((f) => f.op === 'ack' && f.ref === 'bp');
    const letter = await until(async () => {
      const { body } = await adminJson(server.port, 'GET', `/admin/dlq/${ack.id}`);
      return body.id === ack.id ? body : undefined;
    }, 'the dead letter');
    assert.match(String(letter.reason), /processor for type "broken" threw: cannot handle this/);
    assert.deepEqual(letter.data, { type: 'broken', n: 1 });
    const list = (await adminJson(server.port, 'GET', '/admin/dlq')).body;
    assert.ok((list.items as Array<Record<string, unknown>>).some((l) => l.kind === 'pub' && (l.data as { n: number }).n === 2));
    a.send({ op: 'pub', group: 'boom', data: 'still alive', ref: 'alive' });
    assert.equal((await a.next((f) => f.op === 'msg')).data, 'still alive');
    assert.equal((await adminJson(server.port, 'GET', '/health')).body.status, 'ok');
    const tb = await member(server.port, 'tb');
    assert.equal(tb.welcome.pending, 0, 'nothing was delivered');
    a.close();
    tb.close();
  });
});

describe('dead-letter admin: HTTP API and CLI', () => {
  let server: RunningServer;
  const token = 'admin-secret';
  before(async () => {
    server = await startInProcess({ websocket: { admin: { token }, delivery: { ack_timeout: 0.1, max_attempts: 1 } } });
  });
  after(() => server.close());

  async function deadLetterFor(user: string, data: unknown): Promise<string> {
    const client = await member(server.port, user);
    const id = await server.send(user, data);
    await nextMsgs(client, 1);
    client.close();
    await until(async () => ((await adminJson(server.port, 'GET', `/admin/dlq/${id}`, token)).status === 200 ? true : undefined), 'the dead letter');
    return id;
  }

  test('admin endpoints need the bearer token when one is configured', async () => {
    assert.equal((await adminJson(server.port, 'GET', '/admin/dlq')).status, 401);
    assert.equal((await adminJson(server.port, 'GET', '/admin/dlq', 'wrong')).status, 401);
    assert.equal((await adminJson(server.port, 'GET', '/admin/dlq', token)).status, 200);
  });

  test('list, show, requeue and purge over HTTP', async () => {
    const id = await deadLetterFor('kim', { n: 7 });
    const list = (await adminJson(server.port, 'GET', '/admin/dlq', token)).body;
    assert.ok((list.count as number) >= 1);
    const shown = (await adminJson(server.port, 'GET', `/admin/dlq/${id}`, token)).body;
    assert.deepEqual([shown.to, shown.data, shown.attempts, shown.kind], ['kim', { n: 7 }, 1, 'send']);
    assert.match(String(shown.reason), /not acknowledged after 1 deliveries/);
    // Requeued, it goes back to kim's queue and arrives on the next connection.
    const requeued = await adminJson(server.port, 'POST', `/admin/dlq/${id}/requeue`, token);
    assert.equal(requeued.status, 200);
    assert.equal((await adminJson(server.port, 'GET', `/admin/dlq/${id}`, token)).status, 404);
    const kim = await member(server.port, 'kim');
    assert.equal(kim.welcome.pending, 1);
    const [msg] = await nextMsgs(kim, 1);
    assert.equal(msg!.id, id);
    kim.send({ op: 'ack', id });
    await settle(kim);
    kim.close();
    const other = await deadLetterFor('lee', 'purge me');
    assert.deepEqual((await adminJson(server.port, 'DELETE', `/admin/dlq/${other}`, token)).body, { purged: 1 });
    await deadLetterFor('lee', 'and me');
    const purged = await adminJson(server.port, 'DELETE', '/admin/dlq', token);
    assert.ok((purged.body.purged as number) >= 1);
    assert.equal((await adminJson(server.port, 'GET', '/admin/dlq', token)).body.count, 0);
    assert.equal((await adminJson(server.port, 'GET', '/admin/dlq/nope', token)).status, 404);
  });

  test('npm run dlq -- list|show|requeue|purge does the same through the HTTP API', async () => {
    const id = await deadLetterFor('max', 'via cli');
    const env = { WEBSOCKET_ADMIN_TOKEN: token };
    const url = ['--url', `http://127.0.0.1:${server.port}`];
    const list = await cli(['list', ...url], env);
    assert.equal(list.code, 0, list.stderr);
    assert.ok((JSON.parse(list.stdout).items as Array<{ id: string }>).some((l) => l.id === id));
    const show = await cli(['show', id, ...url], env);
    assert.equal(JSON.parse(show.stdout).data, 'via cli');
    assert.equal((await cli(['show', id, ...url])).code, 1, 'no token: refused');
    const requeue = await cli(['requeue', id, ...url], env);
    assert.equal(JSON.parse(requeue.stdout).requeued, id);
    assert.equal((await cli(['purge', ...url], env)).code, 2, 'purge without an ID nor --all is a usage error');
    const purge = await cli(['purge', '--all', ...url], env);
    assert.equal(purge.code, 0);
    assert.equal((await cli(['frobnicate', ...url], env)).code, 2);
    const two = await cli(['purge', id, 'another', ...url], env);
    assert.equal(two.code, 2, 'one id per command: purge A B acted on A alone');
    assert.match(two.stderr, /purge takes one id/);
  });
});

describe('admin endpoints without a token', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess();
  });
  after(() => server.close());

  test('answer loopback clients', async () => {
    const { status, body } = await adminJson(server.port, 'GET', '/admin/dlq');
    assert.equal(status, 200);
    assert.equal(body.count, 0);
  });

  test('refuse a browser request that changes state (a page on this host cannot purge or requeue)', async () => {
    // Browsers send Sec-Fetch-Site with every request (and Origin with these methods); Node's
    // fetch sends Sec-Fetch-Mode alone, which is no browser's mark (the CLI uses it: below).
    const browserMarks: Array<Record<string, string>> = [{ origin: 'http://localhost:3000' }, { 'sec-fetch-site': 'same-site' }, { 'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'no-cors' }];
    for (const headers of browserMarks) {
      for (const [method, path] of [['DELETE', '/admin/dlq'], ['POST', '/admin/dlq/x/requeue']] as const) {
        const { status, body } = await adminJson(server.port, method, path, undefined, headers);
        assert.equal(status, 403, `${method} ${path} ${JSON.stringify(headers)}`);
        assert.equal(body.code, 'forbidden');
      }
    }
    assert.equal((await adminJson(server.port, 'GET', '/admin/dlq', undefined, { origin: 'http://localhost:3000' })).status, 200);
  });

  test('refuse a request that names this host by another name: a page whose name was made to resolve to 127.0.0.1 (DNS rebinding) reads nothing', async () => {
    const rebound = await adminJson(server.port, 'GET', '/admin/dlq', undefined, { host: `attacker.example:${server.port}`, 'sec-fetch-site': 'same-origin' });
    assert.deepEqual([rebound.status, rebound.body.code], [403, 'forbidden']);
    assert.match(String(rebound.body.message), /DNS rebinding/);
    for (const host of [`localhost:${server.port}`, 'app.localhost', `127.0.0.1:${server.port}`, `[::1]:${server.port}`, '127.1.2.3']) {
      assert.equal((await adminJson(server.port, 'GET', '/admin/dlq', undefined, { host })).status, 200, host);
    }
  });
});

describe('the dead-letter CLI on a server without a token (loopback only)', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { delivery: { ack_timeout: 0.1, max_attempts: 1 } } });
  });
  after(() => server.close());

  async function deadLetters(user: string, count: number): Promise<string[]> {
    const client = await member(server.port, user);
    const ids = [];
    for (let n = 0; n < count; n++) ids.push(await server.send(user, n));
    await nextMsgs(client, count);
    client.close();
    await until(async () => ((await adminJson(server.port, 'GET', '/admin/dlq')).body.count === count ? true : undefined), 'the dead letters');
    return ids;
  }

  test('requeues and purges one (Node\'s fetch is not taken for a browser); an empty id, . or .. purges nothing', async () => {
    const [first, second] = await deadLetters('nell', 2);
    const url = ['--url', `http://127.0.0.1:${server.port}`];
    for (const id of ['', '.', '..']) {
      const refused = await cli(['purge', id, ...url]);
      assert.equal(refused.code, 2, `purge ${JSON.stringify(id)}`);
      assert.match(refused.stderr, /is not a dead letter id/);
    }
    const emptyId = await adminJson(server.port, 'DELETE', '/admin/dlq/');
    assert.deepEqual([emptyId.status, emptyId.body.code], [400, 'bad_request'], 'a path ending in / is not the whole queue');
    assert.equal((await adminJson(server.port, 'GET', '/admin/dlq')).body.count, 2, 'nothing was purged');
    const requeue = await cli(['requeue', first!, ...url]);
    assert.equal(requeue.code, 0, requeue.stderr);
    const purge = await cli(['purge', second!, ...url]);
    assert.equal(purge.code, 0, purge.stderr);
    assert.deepEqual(JSON.parse(purge.stdout), { purged: 1 });
  });
});

describe('admin endpoints without a token, behind a trusted proxy on this host', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { server: { trusted_proxies: ['127.0.0.1'] } } });
  });
  after(() => server.close());

  test('judge the client the proxy forwards for, not the proxy: a remote one is refused, a local one answered', async () => {
    for (const method of ['GET', 'DELETE']) {
      const remote = await adminJson(server.port, method, '/admin/dlq', undefined, { 'x-forwarded-for': '203.0.113.9' });
      assert.deepEqual([remote.status, remote.body.code], [403, 'forbidden'], method);
    }
    assert.equal((await adminJson(server.port, 'GET', '/admin/dlq', undefined, { 'x-forwarded-for': '127.0.0.1' })).status, 200);
    assert.equal((await adminJson(server.port, 'GET', '/admin/dlq')).status, 200, 'the proxy\'s own host, forwarding for nobody');
  });
});

describe('admin endpoints with a token', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({ websocket: { admin: { token: 'the-admin-token' } } });
  });
  after(() => server.close());

  test('refuse a missing, shorter, longer or wrong token alike, and accept the right one from a browser too', async () => {
    for (const token of [undefined, 'x', 'the-admin-token-and-more', 'the-admin-tokem']) {
      assert.equal((await adminJson(server.port, 'GET', '/admin/dlq', token)).status, 401, String(token));
    }
    assert.equal((await adminJson(server.port, 'DELETE', '/admin/dlq', 'the-admin-token', { origin: 'http://localhost:3000' })).status, 200);
  });
});

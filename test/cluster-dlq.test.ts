/**
 * /admin/dlq and `npm run dlq` in cluster mode (docs/messaging.md, "Dead-letter queue"): the
 * dead letters are in Redis, and any node lists, shows, requeues and purges them with the same
 * HTTP contract and codes as the LMDB store; a requeued letter reaches its user on any node.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { member } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { adminJson, nextMsgs, settle, until } from './helpers/messaging.js';
import { announceSkip, nodeConfig } from './helpers/redis.js';
import { startInProcess } from './helpers/server.js';

const skip = announceSkip('cluster-dlq.test');
const DLQ_CLI = fileURLToPath(new URL('../scripts/dlq.js', import.meta.url));
const token = 'cluster-admin-token';

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [DLQ_CLI, ...args], { env: { ...process.env, WEBSOCKET_ADMIN_TOKEN: token } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('the dead-letter API on the nodes of a cluster', { skip, timeout: 180_000 }, () => {
  const spec = { prefix: 'dlq:', extra: { websocket: { admin: { token }, delivery: { ack_timeout: 0.2, max_attempts: 1, max_backoff: 1 } } } };
  const cluster = clusterFixture({ nodes: [spec, spec], stop: 'graceful' });
  const { nodes, open } = cluster;
  const port = (node: number): number => nodes[node]!.port;

  /** A send to `user` on node 0 that `user` never acknowledges: a dead letter after its one attempt. */
  async function deadLetterFor(user: string, data: unknown): Promise<string> {
    const sender = await member(port(0), `sender-${user}`);
    const recipient = await member(port(0), user);
    open.push(sender, recipient);
    sender.send({ op: 'send', to: user, data, ref: 's' });
    const id = (await sender.next((f) => f.op === 'ack' && f.ref === 's')).id as string;
    await nextMsgs(recipient, 1);
    recipient.close();
    sender.close();
    await until(async () => ((await adminJson(port(1), 'GET', `/admin/dlq/${encodeURIComponent(id)}`, token)).status === 200 ? true : undefined), 'the dead letter');
    return id;
  }

  test('the bearer token is needed, as on one process', async () => {
    assert.equal((await adminJson(port(0), 'GET', '/admin/dlq')).status, 401);
    assert.equal((await adminJson(port(1), 'GET', '/admin/dlq', 'wrong')).status, 401);
    assert.equal((await adminJson(port(1), 'GET', '/admin/dlq', token)).status, 200);
  });

  test('list, show, requeue and purge on any node; the requeued message reaches its user on another', async () => {
    const id = await deadLetterFor('kim', { n: 7 });
    const list = (await adminJson(port(0), 'GET', '/admin/dlq', token)).body;
    assert.ok((list.items as Array<{ id: string }>).some((l) => l.id === id));
    assert.ok((list.count as number) >= 1);
    const shown = (await adminJson(port(1), 'GET', `/admin/dlq/${id}`, token)).body;
    assert.deepEqual([shown.id, shown.to, shown.data, shown.attempts, shown.kind], [id, 'kim', { n: 7 }, 1, 'send']);
    assert.match(String(shown.reason), /not acknowledged after 1 deliveries/);
    assert.equal(typeof shown.failedAt, 'number');

    const requeued = await adminJson(port(1), 'POST', `/admin/dlq/${id}/requeue`, token);
    assert.deepEqual([requeued.status, requeued.body], [200, { requeued: id }]);
    assert.equal((await adminJson(port(0), 'GET', `/admin/dlq/${id}`, token)).status, 404);
    assert.equal((await adminJson(port(0), 'POST', `/admin/dlq/${id}/requeue`, token)).status, 404, 'requeued once');
    const kim = await member(port(0), 'kim');
    open.push(kim);
    assert.equal(kim.welcome.pending, 1);
    const [msg] = await nextMsgs(kim, 1);
    assert.deepEqual([msg!.id, msg!.data], [id, { n: 7 }]);
    kim.send({ op: 'ack', id });
    await settle(kim);
    kim.close();

    const other = await deadLetterFor('lee', 'purge me');
    assert.deepEqual((await adminJson(port(0), 'DELETE', `/admin/dlq/${other}`, token)).body, { purged: 1 });
    await deadLetterFor('lee', 'and me');
    const purged = await adminJson(port(1), 'DELETE', '/admin/dlq', token);
    assert.ok((purged.body.purged as number) >= 1);
    assert.equal((await adminJson(port(0), 'GET', '/admin/dlq', token)).body.count, 0);
  });

  test('two nodes acting on one letter at once: one wins, the other gets 404 (a DELETE that lost says so, not purged)', async () => {
    for (let round = 0; round < 2; round++) {
      const requeued = await deadLetterFor(`race-a${round}`, round);
      const twice = await Promise.all([0, 1].map((node) => adminJson(port(node), 'POST', `/admin/dlq/${requeued}/requeue`, token)));
      assert.deepEqual(twice.map((a) => a.status).sort(), [200, 404], `round ${round}: two requeues`);
      const raced = await deadLetterFor(`race-b${round}`, round);
      const [purge, requeue] = await Promise.all([adminJson(port(0), 'DELETE', `/admin/dlq/${raced}`, token), adminJson(port(1), 'POST', `/admin/dlq/${raced}/requeue`, token)]);
      assert.deepEqual([purge.status, requeue.status].sort(), [200, 404], `round ${round}: a delete and a requeue`);
      const deleted = await deadLetterFor(`race-c${round}`, round);
      const purges = await Promise.all([0, 1].map((node) => adminJson(port(node), 'DELETE', `/admin/dlq/${deleted}`, token)));
      assert.deepEqual(purges.map((a) => a.status).sort(), [200, 404], `round ${round}: two deletes`);
    }
  });

  test('pages in id order with `next`; unknown ids are 404, bad encodings 400', async () => {
    const ids = [await deadLetterFor('p1', 1), await deadLetterFor('p2', 2), await deadLetterFor('p3', 3)].sort();
    const first = (await adminJson(port(0), 'GET', '/admin/dlq?limit=2', token)).body;
    assert.deepEqual((first.items as Array<{ id: string }>).map((l) => l.id), ids.slice(0, 2));
    assert.equal(first.next, ids[1]);
    const rest = (await adminJson(port(1), 'GET', `/admin/dlq?limit=2&after=${encodeURIComponent(first.next as string)}`, token)).body;
    assert.deepEqual([(rest.items as Array<{ id: string }>).map((l) => l.id), rest.next, rest.count], [ids.slice(2), null, 3]);
    assert.equal((await adminJson(port(0), 'GET', '/admin/dlq/nope', token)).status, 404);
    assert.equal((await adminJson(port(0), 'GET', '/admin/dlq/%E0%A4%A', token)).status, 400);
    await adminJson(port(0), 'DELETE', '/admin/dlq', token);
  });

  test('npm run dlq -- list|show|requeue|purge against a node', async () => {
    const id = await deadLetterFor('max', 'via cli');
    const url = ['--url', `http://127.0.0.1:${port(1)}`];
    const list = await cli(['list', ...url]);
    assert.equal(list.code, 0, list.stderr);
    assert.ok((JSON.parse(list.stdout).items as Array<{ id: string }>).some((l) => l.id === id));
    assert.equal(JSON.parse((await cli(['show', id, ...url])).stdout).data, 'via cli');
    assert.equal(JSON.parse((await cli(['requeue', id, ...url])).stdout).requeued, id);
    assert.equal((await cli(['purge', '--all', ...url])).code, 0);
  });

  test('a pub whose processor throws is dead-lettered in Redis under the id its publisher was acknowledged with; it cannot be requeued', async () => {
    // A node in this process: processors are registered through the embedding API.
    const node = await startInProcess(nodeConfig(cluster.redis.url, 'dlq:', 1, { websocket: { admin: { token } } }));
    try {
      node.registerProcessor('broken', () => {
        throw new Error('cannot handle this');
      });
      const publisher = await member(node.port, 'pub-processor', ['room']);
      open.push(publisher);
      publisher.send({ op: 'pub', group: 'room', data: { type: 'broken' }, ref: 'p' });
      const id = (await publisher.next((f) => f.op === 'ack' && f.ref === 'p')).id as string;
      const letter = await until(async () => {
        const { status, body } = await adminJson(port(1), 'GET', `/admin/dlq/${encodeURIComponent(id)}`, token);
        return status === 200 ? body : undefined;
      }, 'the dead-lettered pub on another node');
      assert.deepEqual([letter.kind, letter.to, letter.data], ['pub', 'room', { type: 'broken' }]);
      assert.match(String(letter.reason), /cannot handle this/);
      const requeued = await adminJson(port(0), 'POST', `/admin/dlq/${encodeURIComponent(id)}/requeue`, token);
      assert.equal(requeued.status, 409);
    } finally {
      await node.close();
    }
  });

  test('while Redis is unreachable the API answers 503 E_CLUSTER_UNAVAILABLE, and serves again once it is back', async () => {
    await cluster.redis.kill();
    await until(async () => ((await adminJson(port(0), 'GET', '/admin/dlq', token)).status === 503 ? true : undefined), 'a 503');
    const refused = await adminJson(port(0), 'GET', '/admin/dlq/some-id', token);
    assert.equal(refused.status, 503);
    assert.match(JSON.stringify(refused.body), /E_CLUSTER_UNAVAILABLE/);
    await cluster.redis.restart();
    await until(async () => ((await adminJson(port(0), 'GET', '/admin/dlq', token)).status === 200 ? true : undefined), 'the API back', 15_000);
  });
});

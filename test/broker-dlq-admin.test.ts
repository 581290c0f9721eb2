import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { answerDlqRequest, serveDlqRequest, type DeadLetterStore } from '../src/broker/dlq-admin.js';
import { msgsIn, startBroker, type TestBroker } from './helpers/broker.js';

describe('broker: the /admin/dlq requests the shards forward', () => {
  let t: TestBroker;
  let requests = 0;
  before(async () => {
    t = await startBroker();
    // A throwing processor is the quickest way to a dead letter.
    t.broker.registerProcessor('broken', () => {
      throw new Error('no');
    });
  });
  after(() => t.close());

  /** One admin request as a shard forwards it (uWS gives the method in lower case). */
  async function admin(method: string, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
    const requestId = ++requests;
    t.link.admin(1, requestId, method, path);
    const reply = await t.link.next('adminReply', (c) => c.requestId === requestId);
    assert.equal(reply.shard, 1, 'the answer goes to the shard that asked');
    return { status: reply.status, body: JSON.parse(reply.bodyJson) as Record<string, unknown> };
  }

  async function deadLetter(to: string, n: number): Promise<string> {
    const ref = `dl-${to}-${n}`;
    t.link.send(0, 'ops-1', 'ops', to, { type: 'broken', n }, { ref });
    const ack = await t.link.answerTo(ref);
    assert.ok(ack.op === 'senderAck');
    return ack.id;
  }

  test('list (with limit and after) and show', async () => {
    const first = await deadLetter('ivy', 1);
    const second = await deadLetter('ivy', 2);
    const list = await admin('get', '/admin/dlq?limit=1');
    assert.equal(list.status, 200);
    assert.equal(list.body.count, 2);
    const items = list.body.items as Array<Record<string, unknown>>;
    assert.deepEqual(items.map((i) => i.id), [first]);
    const rest = await admin('get', `/admin/dlq?after=${first}`);
    assert.deepEqual((rest.body.items as Array<Record<string, unknown>>).map((i) => i.id), [second]);
    const shown = await admin('get', `/admin/dlq/${second}`);
    assert.equal(shown.status, 200);
    assert.deepEqual({ ...shown.body, ts: 0, failedAt: 0 }, {
      id: second,
      kind: 'send',
      to: 'ivy',
      from: 'ops',
      group: null,
      data: { type: 'broken', n: 2 },
      pri: 1,
      ts: 0,
      attempts: 0,
      reason: 'processor for type "broken" threw: no',
      failedAt: 0,
    });
  });

  test('requeue puts a dead letter back in its recipient\'s queue, delivered like a new message', async () => {
    const id = await deadLetter('jon', 1);
    const requeued = await admin('post', `/admin/dlq/${id}/requeue`);
    assert.deepEqual([requeued.status, requeued.body], [200, { requeued: id }]);
    assert.equal((await admin('get', `/admin/dlq/${id}`)).status, 404);
    t.link.online(0, 'jon-1', 'jon');
    assert.equal((await t.link.next('welcome', (c) => c.sid === 'jon-1')).pending, 1);
    const delivery = await t.link.next('deliverToSid', (c) => c.sid === 'jon-1');
    assert.equal(msgsIn(delivery.frame)[0]!.id, id);
    t.link.ack(0, 'jon-1', 'jon', id);
  });

  test('requeue requests repeated while the first completes deliver the message once', async () => {
    const id = await deadLetter('liv', 1);
    t.link.online(0, 'liv-1', 'liv');
    await t.link.next('welcome', (c) => c.sid === 'liv-1');
    const deliveries = () => t.link.all('deliverToUser', (c) => c.user === 'liv' && msgsIn(c.frame).some((m) => m.id === id)).length;
    const statuses: Promise<number>[] = [];
    // The recipient acknowledges at once, so the message leaves memory while its letter's removal is still being written.
    for (let n = 0; n < 40 && statuses.length < 40; n++) {
      statuses.push(admin('post', `/admin/dlq/${id}/requeue`).then((r) => r.status));
      if (deliveries() > 0) t.link.ack(0, 'liv-1', 'liv', id);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const answered = await Promise.all(statuses);
    assert.ok(answered.every((s) => s === 200 || s === 404), `200 or 404 only: ${answered.join(',')}`);
    assert.equal(deliveries(), 1, 'delivered once');
  });

  test('a requeue request while one is under way gets its outcome: both fail when the store cannot write', async () => {
    const id = await deadLetter('mia', 1);
    const put = t.store.put.bind(t.store);
    t.store.put = () => new Promise((resolve) => setTimeout(() => resolve(false), 50));
    try {
      const first = admin('post', `/admin/dlq/${id}/requeue`);
      await new Promise((resolve) => setTimeout(resolve, 5));
      const second = admin('post', `/admin/dlq/${id}/requeue`);
      assert.deepEqual([(await first).status, (await second).status], [503, 503]);
    } finally {
      t.store.put = put;
    }
    assert.equal((await admin('get', `/admin/dlq/${id}`)).status, 200, 'still a dead letter');
    assert.equal((await admin('post', `/admin/dlq/${id}/requeue`)).status, 200, 'and requeued once the store can write');
  });

  test('list limit: a whole number from 1; larger than 1000 reads as 1000; anything else is a coded 400', async () => {
    for (const limit of ['0', '1.5', '-1', 'ten', '', '1e3']) {
      const refused = await admin('get', `/admin/dlq?limit=${limit}`);
      assert.equal(refused.status, 400, `limit=${limit}`);
      assert.match(String(refused.body.message), /limit must be a whole number from 1 to 1000/);
    }
    assert.equal((await admin('get', '/admin/dlq?limit=5000')).status, 200);
    assert.equal((await admin('get', '/admin/dlq?limit=10000000000')).status, 200);
  });

  test('delete one, then purge all', async () => {
    const id = await deadLetter('kit', 1);
    assert.deepEqual((await admin('delete', `/admin/dlq/${id}`)).body, { purged: 1 });
    await deadLetter('kit', 2);
    const purged = await admin('delete', '/admin/dlq');
    assert.equal(purged.status, 200);
    assert.ok((purged.body.purged as number) >= 1);
    assert.equal((await admin('get', '/admin/dlq')).body.count, 0);
  });

  test('unknown paths, ids and methods get 404 with the list of routes; a dead-lettered pub cannot be requeued (500)', async () => {
    for (const [method, path] of [['get', '/admin/other'], ['put', '/admin/dlq'], ['get', '/admin/dlq/a/b/c']]) {
      const { status, body } = await admin(method!, path!);
      assert.equal(status, 404, `${method} ${path}`);
      assert.match(String(body.message), /see GET \/admin\/dlq/);
    }
    assert.deepEqual(await admin('get', '/admin/dlq/nope'), { status: 404, body: { code: 'not_found', message: 'no dead letter nope' } });
    t.link.pub(0, 'ops-1', 'ops', 'room', { type: 'broken' }, 'pub');
    await t.link.answerTo('pub');
    const letter = t.store.listDead(1000).find((l) => l.target === 'p:room')!;
    assert.equal((await admin('post', `/admin/dlq/${letter.id}/frobnicate`)).status, 404);
    const refused = await admin('post', `/admin/dlq/${letter.id}/requeue`);
    assert.deepEqual(refused, { status: 409, body: { code: 'conflict', message: 'a dead-lettered pub cannot be requeued: pubs are not stored' } });
  });

  test('a bad percent-encoding is a coded 400, in every method', async () => {
    for (const path of ['/admin/dlq/%', '/admin/dlq/%zz', '/admin/dlq/%E0%A4%A', '/admin/dlq/%/requeue']) {
      for (const method of ['get', 'delete', 'post']) {
        assert.deepEqual(await admin(method, path), { status: 400, body: { code: 'bad_request', message: 'the dead letter id is not valid percent-encoded UTF-8' } }, `${method} ${path}`);
      }
    }
  });

  test('an id longer than any the server issues is a coded 404 in every method, without asking the store (whose keys are limited)', async () => {
    const long = 'x'.repeat(8000);
    const answer = { status: 404, body: { code: 'not_found', message: 'no dead letter has an id of 8000 characters (at most 128)' } };
    for (const [method, path] of [['get', `/admin/dlq/${long}`], ['delete', `/admin/dlq/${long}`], ['post', `/admin/dlq/${long}/requeue`]] as const) {
      assert.deepEqual(await admin(method, path), answer, method);
    }
    const touched = (): never => assert.fail('the store was asked');
    const untouchable: DeadLetterStore = { countDead: touched, listDead: touched, getDead: touched, removeDead: touched, purgeDead: touched };
    for (const method of ['get', 'delete']) assert.deepEqual(await answerDlqRequest(method, `/admin/dlq/${long}`, untouchable, touched), answer, method);
    assert.equal((await admin('get', `/admin/dlq/${'x'.repeat(128)}`)).status, 404, 'as long as an id may be: looked up, not found');
  });

  test('a letter whose data nests deeper than a frame\'s may (stored before that limit) is listed and shown with its data as the stored text', async () => {
    const data = '['.repeat(20_000) + ']'.repeat(20_000);
    const id = 'zz-deep';
    await t.store.putDeadLetter({ id, seq: 1, target: 'u:deep', from: 'old', group: null, data, pri: 1, ts: 1, at: 0, attempts: 2, strategy: null, reason: 'no ack', failedAt: 2 });
    const list = await admin('get', '/admin/dlq?limit=1000');
    assert.equal(list.status, 200);
    const item = (list.body.items as Array<Record<string, unknown>>).find((i) => i.id === id);
    assert.equal(item?.data, data);
    const shown = await admin('get', `/admin/dlq/${id}`);
    assert.deepEqual([shown.status, shown.body.data], [200, data]);
    assert.deepEqual((await admin('delete', `/admin/dlq/${id}`)).body, { purged: 1 });
  });

  test('a store that fails is a coded 500, and a reply that throws is reported, not left as a rejection', async () => {
    const broken: DeadLetterStore = {
      countDead: () => 0,
      listDead: () => [],
      getDead: () => {
        throw new Error('disk on fire');
      },
      removeDead: () => Promise.reject(new Error('no')),
      purgeDead: () => Promise.reject(new Error('no')),
    };
    const requeue = (): Promise<string> => Promise.reject(new Error('no'));
    assert.deepEqual(await answerDlqRequest('get', '/admin/dlq/x', broken, requeue), { status: 500, body: { code: 'internal_error', message: 'disk on fire' } });
    assert.deepEqual(await answerDlqRequest('delete', '/admin/dlq', broken, requeue), { status: 500, body: { code: 'internal_error', message: 'no' } });
    const failed = await new Promise<unknown>((resolve) => {
      serveDlqRequest('get', '/admin/dlq', broken, requeue, () => {
        throw new Error('ring gone');
      }, resolve);
    });
    assert.equal((failed as Error).message, 'ring gone');
  });
});

describe('broker: /admin/dlq pages fit the shard link', () => {
  let t: TestBroker;
  before(async () => {
    // 64 KiB rings: an answer of at most about 32 KB.
    t = await startBroker({ performance: { ring_bytes: 65536 }, server: { max_payload: 16384 } });
    t.broker.registerProcessor('broken', () => {
      throw new Error('no');
    });
  });
  after(() => t.close());

  test('a list of large letters is cut by bytes into pages, each one ring record; next leads through all of them, in order', async () => {
    const text = 'x'.repeat(10_000);
    const ids: string[] = [];
    for (let n = 0; n < 8; n++) {
      t.link.send(0, 'ops-1', 'ops', 'lou', { type: 'broken', n, text }, { ref: `big-${n}` });
      const ack = await t.link.answerTo(`big-${n}`);
      assert.ok(ack.op === 'senderAck');
      ids.push(ack.id);
    }
    const seen: string[] = [];
    let after: string | null = null;
    let pages = 0;
    do {
      const requestId = 1000 + pages++;
      t.link.admin(0, requestId, 'get', `/admin/dlq?limit=1000${after === null ? '' : `&after=${after}`}`);
      const reply = await t.link.next('adminReply', (c) => c.requestId === requestId);
      assert.equal(reply.status, 200);
      assert.ok(Buffer.byteLength(reply.bodyJson) <= t.link.maxFrameBytes, `a page of ${reply.bodyJson.length} characters`);
      const body = JSON.parse(reply.bodyJson) as { count: number; items: Array<{ id: string }>; next: string | null };
      assert.equal(body.count, 8);
      seen.push(...body.items.map((item) => item.id));
      after = body.next;
    } while (after !== null);
    assert.deepEqual(seen, ids);
    assert.ok(pages >= 3, `${pages} pages`);
  });

  test('limit still applies, and next says whether more follow', async () => {
    const requestId = 2000;
    t.link.admin(0, requestId, 'get', '/admin/dlq?limit=1');
    const first = JSON.parse((await t.link.next('adminReply', (c) => c.requestId === requestId)).bodyJson) as { items: Array<{ id: string }>; next: string | null };
    assert.equal(first.items.length, 1);
    assert.equal(first.next, first.items[0]!.id);
    const last = t.store.listDead(1000).at(-1)!.id;
    t.link.admin(0, requestId + 1, 'get', `/admin/dlq?limit=5&after=${t.store.listDead(1000).at(-2)!.id}`);
    const end = JSON.parse((await t.link.next('adminReply', (c) => c.requestId === requestId + 1)).bodyJson) as { items: Array<{ id: string }>; next: string | null };
    assert.deepEqual([end.items.map((i) => i.id), end.next], [[last], null]);
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { runInNewContext } from 'node:vm';
import { OcsError } from '../src/client/index.js';
import type { Processor, ProcessorMessage } from '../src/index.js';
import { msgsIn, startBroker, type TestBroker } from './helpers/broker.js';

describe('broker: processors run before routing', () => {
  let t: TestBroker;
  const seen: ProcessorMessage[] = [];
  before(async () => {
    t = await startBroker();
    t.broker.registerProcessor('shout', (m) => {
      seen.push(structuredClone(m));
      return { ...m, data: { ...(m.data as object), text: String((m.data as { text: string }).text).toUpperCase() } };
    });
    t.broker.registerProcessor('raise', async (m) => ({ ...m, pri: 3 }));
    t.broker.registerProcessor('secret', () => null);
    t.broker.registerProcessor('broken', () => {
      throw new Error('cannot handle this');
    });
    t.broker.registerProcessor('sour', () => Promise.reject(new Error('went off')));
    t.broker.registerProcessor('bigint', (m) => ({ ...m, data: { n: 1n } }));
    t.broker.registerProcessor('cycle', async (m) => {
      const data: Record<string, unknown> = {};
      data.self = data;
      return { ...m, data };
    });
    t.broker.registerProcessor('deep', (m) => ({ ...m, data: JSON.parse('['.repeat(64) + ']'.repeat(64)) as unknown }));
    // Output no ring record can carry (rings of 4 MiB: records of at most 2 MiB).
    t.broker.registerProcessor('bloat', (m) => ({ ...m, data: 'z'.repeat(3_000_000) }));
    // Promises that are no `instanceof Promise` here: a promise library's thenable, another realm's.
    const checked = (m: ProcessorMessage): ProcessorMessage => ({ ...m, data: { ...(m.data as object), checked: true } });
    t.broker.registerProcessor('thenable', (m) => ({ then: (resolve: (v: ProcessorMessage) => void) => resolve(checked(m)) }) as unknown as Promise<ProcessorMessage>);
    t.broker.registerProcessor('realm', runInNewContext('(check) => async (m) => check(m)')(checked) as Processor);
    t.broker.registerProcessor('realm-sour', runInNewContext('async () => { throw new Error("refused by policy") }') as Processor);
    // A thrown value with no toString (a null-prototype object).
    t.broker.registerProcessor('opaque', () => {
      throw Object.assign(Object.create(null) as object, { field: 'text' });
    });
    t.broker.registerProcessor('no-data', (m) => ({ ...m, data: undefined }));
    // Values that even Object.prototype.toString cannot describe, and a `then` that throws when read.
    const revoked = (): object => {
      const { proxy, revoke } = Proxy.revocable({}, {});
      revoke();
      return proxy;
    };
    t.broker.registerProcessor('revoked', () => {
      throw revoked();
    });
    t.broker.registerProcessor('revoked-async', async () => {
      await null;
      throw revoked();
    });
    t.broker.registerProcessor('no-tag', () => {
      throw Object.defineProperty({}, Symbol.toStringTag, {
        get() {
          throw new Error('no tag');
        },
      });
    });
    t.broker.registerProcessor('bad-then', (m) => Object.defineProperty({ ...m }, 'then', {
      get() {
        throw new Error('no then here');
      },
    }));
    t.link.online(1, 'bob-1', 'bob');
  });
  after(() => t.close());

  test('the shards learn which data.type values to send through the broker', () => {
    const types = ['bad-then', 'bigint', 'bloat', 'broken', 'cycle', 'deep', 'no-data', 'no-tag', 'opaque', 'raise', 'realm', 'realm-sour', 'revoked', 'revoked-async', 'secret', 'shout', 'sour', 'thenable'];
    assert.deepEqual([...t.link.processorTypes].sort(), types);
    assert.deepEqual(t.broker.processorTypes().sort(), types);
  });

  test('a processor may change the data (sync) or the priority (async) of a send or an any', async () => {
    const { link } = t;
    link.send(0, 'alice-1', 'alice', 'bob', { type: 'shout', text: 'hi' }, { ref: 's', pri: 3 });
    const ack = await link.answerTo('s');
    assert.ok(ack.op === 'senderAck');
    const delivered = await link.next('deliverToUser', (c) => c.user === 'bob' && msgsIn(c.frame)[0]!.id === ack.id);
    assert.deepEqual(msgsIn(delivered.frame)[0]!.data, { type: 'shout', text: 'HI' });
    assert.deepEqual(seen[0], { kind: 'send', from: 'alice', to: 'bob', data: { type: 'shout', text: 'hi' }, pri: 3 });

    link.join(1, 'bob-1', 'crew');
    link.any(0, 'alice-1', 'alice', 'crew', { type: 'raise' }, { ref: 'a', pri: 0 });
    const anyAck = await link.answerTo('a');
    assert.ok(anyAck.op === 'senderAck');
    const raised = await link.next('deliverToSid', (c) => c.sid === 'bob-1' && msgsIn(c.frame)[0]!.id === anyAck.id);
    assert.equal(msgsIn(raised.frame)[0]!.pri, 3);
  });

  test('a processor that returns null drops the message: the sender is acknowledged, nothing is stored or delivered', async () => {
    const { link, broker, store } = t;
    const accepted = broker.stats.accepted;
    link.send(0, 'alice-1', 'alice', 'bob', { type: 'secret' }, { ref: 'hush' });
    const ack = await link.answerTo('hush');
    assert.ok(ack.op === 'senderAck');
    assert.match(ack.id, /^test\.p\./, 'an id that is not a stored message');
    assert.equal(broker.stats.accepted, accepted);
    await store.flushed();
    assert.ok(![...store.loadQueue()].some((m) => m.id === ack.id));
    assert.equal(link.all('deliverToUser', (c) => c.frame.includes('"secret"')).length, 0);
  });

  test('a processor that throws, or whose promise rejects, sends the message to the dead-letter queue with the reason; the sender gets its id', async () => {
    const { link, broker, store } = t;
    const before = broker.stats.dead_lettered;
    const odd = 'a value that cannot be described';
    const cases = [['broken', 'cannot handle this'], ['sour', 'went off'], ['realm-sour', 'Error: refused by policy'], ['opaque', '[object Object]'], ['revoked', odd], ['revoked-async', odd], ['no-tag', odd], ['bad-then', 'no then here']] as const;
    for (const [type, reason] of cases) {
      link.send(0, 'alice-1', 'alice', 'bob', { type, n: 1 }, { ref: type });
      const ack = await link.answerTo(type);
      assert.ok(ack.op === 'senderAck');
      const letter = store.getDead(ack.id);
      assert.ok(letter, 'stored in the dead-letter queue before the ack');
      assert.equal(letter.reason, `processor for type "${type}" threw: ${reason}`);
      assert.deepEqual([letter.target, letter.from, JSON.parse(letter.data)], ['u:bob', 'alice', { type, n: 1 }]);
    }
    assert.equal(broker.stats.dead_lettered, before + cases.length);
    assert.equal(link.all('deliverToUser', (c) => cases.some(([type]) => c.frame.includes(`"${type}"`))).length, 0);
  });

  test('a processor whose result cannot be JSON (a BigInt, sync; a cycle, async; nesting deeper than a frame\'s data may) sends the message to the dead-letter queue with the reason; the sender gets its id', async () => {
    const { link, store } = t;
    for (const [type, reason] of [['bigint', /BigInt/], ['cycle', /circular/], ['deep', /nested deeper than 63 levels/], ['no-data', /must be a JSON value, not undefined/]] as const) {
      link.send(0, 'alice-1', 'alice', 'bob', { type }, { ref: type });
      const ack = await link.answerTo(type);
      assert.ok(ack.op === 'senderAck', `${type}: ${JSON.stringify(ack)}`);
      const letter = store.getDead(ack.id);
      assert.ok(letter, `${type}: dead-lettered`);
      assert.match(letter.reason, new RegExp(`^processor for type "${type}" returned data that cannot be JSON: `));
      assert.match(letter.reason, reason);
      assert.deepEqual(JSON.parse(letter.data), { type }, 'the message as it came in');
    }
  });

  test('a pub of a processed type reaches every shard changed, and its sender gets the ack; a throwing one is dead-lettered', async () => {
    const { link, store } = t;
    link.pub(0, 'alice-1', 'alice', 'room', { type: 'shout', text: 'hello' }, 'p');
    const ack = await link.answerTo('p');
    assert.ok(ack.op === 'senderAck');
    const published = await link.next('groupPub', (c) => c.group === 'room');
    const [msg] = msgsIn(published.frame);
    assert.deepEqual([msg!.id, msg!.from, msg!.group, msg!.data, msg!.ackReq], [ack.id, 'alice', 'room', { type: 'shout', text: 'HELLO' }, undefined]);
    assert.equal(seen.at(-1)!.kind, 'pub');

    link.pub(0, 'alice-1', 'alice', 'room', { type: 'broken' }, 'bp');
    const deadAck = await link.answerTo('bp');
    assert.ok(deadAck.op === 'senderAck');
    // The dead letter keeps the id its sender was acknowledged with, so the sender can find it.
    const letters = store.listDead(1000).filter((l) => l.target === 'p:room');
    assert.deepEqual(letters.map((l) => [l.id, JSON.parse(l.data)]), [[deadAck.id, { type: 'broken' }]]);
  });

  test("a processor's output too large for a ring record is refused with E_TOO_LARGE: a send is not stored, a pub not published", async () => {
    const { link, broker } = t;
    const accepted = broker.stats.accepted;
    link.send(0, 'alice-1', 'alice', 'bob', { type: 'bloat' }, { ref: 'fat-send' });
    link.pub(0, 'alice-1', 'alice', 'room', { type: 'bloat' }, 'fat-pub');
    for (const ref of ['fat-send', 'fat-pub']) {
      const answer = await link.answerTo(ref);
      assert.ok(answer.op === 'error', ref);
      assert.equal(answer.code, 'E_TOO_LARGE');
      assert.match(answer.message, /data of 3000002 bytes is over the \d+ one message may carry between threads/);
    }
    assert.equal(broker.stats.accepted, accepted);
    assert.equal(link.all('groupPub', (c) => c.frame.length > 1_000_000).length, 0);
  });

  test("a processor's thenable (a promise library's) or another realm's promise is awaited like a Promise", async () => {
    for (const type of ['thenable', 'realm']) {
      const id = await t.broker.send('bob', { type, text: 'hi' });
      const delivered = await t.link.next('deliverToUser', (c) => msgsIn(c.frame)[0]!.id === id);
      assert.deepEqual(msgsIn(delivered.frame)[0]!.data, { type, text: 'hi', checked: true }, type);
    }
  });

  test('the embedding API goes through processors too', async () => {
    const id = await t.broker.send('bob', { type: 'shout', text: 'from the app' }, { pri: 3 });
    const delivered = await t.link.next('deliverToUser', (c) => msgsIn(c.frame)[0]!.id === id);
    assert.deepEqual(msgsIn(delivered.frame)[0]!.data, { type: 'shout', text: 'FROM THE APP' });
    assert.equal(msgsIn(delivered.frame)[0]!.from, '@server');
  });
});

describe('broker: processors and the embedding API when the server stops', () => {
  test('a processor that has not answered by stop() gets its message refused (E_STORE_UNAVAILABLE): the sender waits no longer', async () => {
    const t = await startBroker();
    t.broker.registerProcessor('hang', () => new Promise<null>(() => {}));
    t.link.online(1, 'bob-1', 'bob');
    // Handled from the start: it rejects during close().
    const outcome = t.broker.send('bob', { type: 'hang' }).then(
      () => assert.fail('resolved'),
      (err: unknown) => err,
    );
    await t.close();
    const err = await outcome;
    assert.ok(err instanceof OcsError && err.code === 'E_STORE_UNAVAILABLE' && /stopped before the processor/.test(err.message), String(err));
  });

  test('a send after stop() is refused (E_STORE_UNAVAILABLE), never written to the closed store (lmdb would end the process)', async () => {
    const t = await startBroker();
    await t.close();
    await assert.rejects(t.broker.send('bob', 'late'), (err: unknown) => err instanceof OcsError && err.code === 'E_STORE_UNAVAILABLE');
    // The store itself refuses, whoever writes.
    assert.equal(await t.store.put({ id: 'x', target: 'u:bob', from: 'a', group: null, data: '1', pri: 1, ts: 1, at: 0, seq: 1, attempts: 0, strategy: null }), false);
    await new Promise((resolve) => setTimeout(resolve, 100));
  });

  test('data that is no JSON value (undefined, a function, a symbol) is a TypeError, not a message of null', async () => {
    const t = await startBroker();
    try {
      for (const data of [undefined, () => 42, Symbol('s')]) {
        await assert.rejects(t.broker.send('bob', data), TypeError);
        assert.throws(() => t.broker.publish('room', data), TypeError);
      }
    } finally {
      await t.close();
    }
  });
});

describe('broker: a processor that does not answer in time', () => {
  test('is failed after delivery.processor_timeout: the message is dead-lettered with the reason, the sender answered; a late answer is ignored', async () => {
    const t = await startBroker({ delivery: { processor_timeout: 0.2 } });
    try {
      let answerLate: (m: ProcessorMessage) => void = () => {};
      t.broker.registerProcessor('slow', (m) => new Promise<ProcessorMessage>((resolve) => (answerLate = () => resolve(m))));
      t.link.online(1, 'bob-1', 'bob');
      t.link.send(0, 'alice-1', 'alice', 'bob', { type: 'slow' }, { ref: 'slow' });
      const ack = await t.link.answerTo('slow');
      assert.ok(ack.op === 'senderAck');
      const letter = t.store.getDead(ack.id);
      assert.ok(letter, 'stored in the dead-letter queue before the ack');
      assert.equal(letter.reason, 'processor for type "slow" did not answer within 0.2 s (delivery.processor_timeout)');
      answerLate({ kind: 'send', from: 'alice', to: 'bob', data: { type: 'slow' }, pri: 1 });
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(t.link.all('deliverToUser', (c) => c.frame.includes('"slow"')).length, 0, 'not delivered after all');
      assert.equal(t.broker.stats.dead_lettered, 1);
    } finally {
      await t.close();
    }
  });

  test('with processor_timeout 0 a processor may take as long as it likes', async () => {
    const t = await startBroker({ delivery: { processor_timeout: 0 } });
    let release: () => void = () => {};
    t.broker.registerProcessor('patient', (m) => new Promise<ProcessorMessage>((resolve) => (release = () => resolve(m))));
    t.link.online(1, 'bob-1', 'bob');
    t.link.send(0, 'alice-1', 'alice', 'bob', { type: 'patient' }, { ref: 'patient' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    release();
    const ack = await t.link.answerTo('patient');
    assert.ok(ack.op === 'senderAck');
    assert.equal(t.broker.stats.dead_lettered, 0);
    await t.close();
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { OcsError } from '../src/protocol/errors.js';
import { sleep, startBroker, type TestBroker } from './helpers/broker.js';

const DAY_MS = 24 * 3600 * 1000;

/** Every process warning emitted while `during` runs (a timer over 2^31-1 ms warns each time it is armed). */
async function warningsDuring(during: () => Promise<void>): Promise<string[]> {
  const seen: string[] = [];
  const listener = (warning: Error): void => void seen.push(`${warning.name}: ${warning.message}`);
  process.on('warning', listener);
  try {
    await during();
  } finally {
    process.off('warning', listener);
  }
  return seen;
}

describe('broker: how far ahead a send may be scheduled (delivery.max_schedule_ahead)', () => {
  let t: TestBroker;
  before(async () => {
    t = await startBroker({ delivery: { max_schedule_ahead: 30 * 24 * 3600 } });
  });
  after(() => t.close());

  test('a client send with `at` beyond max_schedule_ahead gets E_BAD_FRAME naming the limit; nothing is stored', async () => {
    for (const [ref, at] of [['month', Date.now() + 31 * DAY_MS], ['never', 1e15]] as const) {
      t.link.send(0, 'amy-1', 'amy', 'bob', 'far', { ref, at });
      const answer = await t.link.answerTo(ref);
      assert.equal(answer.op, 'error');
      assert.equal(answer.op === 'error' && answer.code, 'E_BAD_FRAME');
      assert.match(answer.op === 'error' ? answer.message : '', /at most 2592000 s ahead \(delivery\.max_schedule_ahead\)/);
    }
    assert.equal(t.broker.stats.stored, 0);
  });

  test('the embedding API: too far ahead rejects with OcsError E_BAD_FRAME; an `at` that is not a finite time, not negative, with a TypeError', async () => {
    await assert.rejects(t.broker.send('bob', 'far', { at: Date.now() + 31 * DAY_MS }), (err: unknown) => err instanceof OcsError && err.code === 'E_BAD_FRAME' && /delivery\.max_schedule_ahead/.test(err.message));
    for (const at of [Number.NaN, Infinity, -1, '2030-01-01' as unknown as number]) {
      await assert.rejects(t.broker.send('bob', 'x', { at }), TypeError, `at: ${String(at)}`);
    }
    assert.equal(t.broker.stats.stored, 0);
  });

  test('within the limit it is accepted and waits quietly: no timer overflow, no spinning', async () => {
    let id = '';
    const warnings = await warningsDuring(async () => {
      id = await t.broker.send('bob', 'in 29 days', { at: Date.now() + 29 * DAY_MS });
      await sleep(300);
    });
    assert.match(id, /^test-/);
    assert.deepEqual(warnings, []);
  });
});

describe('broker: a stored `at` beyond what a timer can wait', () => {
  test('a message loaded from an older store with `at` far out of range (1e15) is kept and does not make the idle broker spin', async () => {
    const first = await startBroker();
    const old = { id: 'old-1', seq: 1, target: 'u:bob', from: 'amy', group: null, data: '"from an older version"', pri: 1, ts: Date.now(), at: 1e15, attempts: 0, strategy: null };
    assert.ok(await first.store.put(old));
    await first.close(true);
    let second: TestBroker | null = null;
    const warnings = await warningsDuring(async () => {
      second = await startBroker({ dataDir: first.dataDir });
      await sleep(300);
    });
    try {
      assert.deepEqual(warnings, []);
      assert.equal(second!.broker.stats.stored, 1);
    } finally {
      await second!.close();
    }
  });
});

/**
 * Whatever falls due at one moment (scheduled sends, ack deadlines of a burst delivered
 * together) is handled a slice of the broker's time at a time, not in one turn: a client can
 * schedule as many sends as the limits on stored messages allow for one millisecond, and until
 * 2026-12-08 the broker routed all of them in one synchronous turn, during which no shard's
 * record was read (200,000 sends due at once on a real server: another user's `send` waited 8.1 s
 * for its ack; sliced, at most 0.8 s while they went out, the test client's own process busy too).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sleep, startBroker, type TestBroker } from './helpers/broker.js';
import { until } from './helpers/messaging.js';
import { AckTimers } from '../src/broker/ack-timers.js';
import { newEntry, State, type Entry } from '../src/broker/queues.js';
import { loadConfig } from '../src/config/load.js';

const USERS = 16;
const BURST = 16_000;

describe('broker: many things due at the same moment', () => {
  let t: TestBroker;
  before(async () => {
    t = await startBroker({ delivery: { ack_timeout: 600 } });
    for (let u = 0; u < USERS; u++) t.link.online(u % 2, `user${u}-1`, `user${u}`);
  });
  after(() => t.close());

  /** How many deliveries the broker had made when a timer due just after `at` got to run. */
  function deliveredBy(at: number): Promise<number> {
    const before = t.broker.stats.delivered;
    // After the broker's own wake-up (on its 50 ms grid), not before: due later, it runs later.
    return new Promise((resolve) => setTimeout(() => resolve(t.broker.stats.delivered - before), Math.ceil(at / 50) * 50 + 20 - Date.now()));
  }

  test('scheduled sends all due at one moment go out over several turns: a timer due just after them runs before the last is delivered, and all of them are', async () => {
    // Far enough ahead that they are all stored before it (checked: else the test shows nothing).
    const at = Date.now() + 2_000 + BURST / 4;
    const sends: Array<Promise<string>> = [];
    for (let i = 0; i < BURST; i++) sends.push(t.broker.send(`user${i % USERS}`, i, { at }));
    await Promise.all(sends);
    assert.ok(Date.now() < at - 200, `the sends were stored only ${Date.now() - at} ms before their time`);
    const before = t.broker.stats.delivered;
    const soFar = await deliveredBy(at);
    assert.ok(soFar < BURST, `all ${BURST} were delivered in the turn they fell due`);
    await until(() => t.broker.stats.delivered - before >= BURST || undefined, `${BURST} deliveries`, 60_000);
  });
});

describe('AckTimers: what falls due at once is handled a slice of time at a time', () => {
  const COUNT = 4_000;
  /** Each handler call costs this much (a delivery reads and encodes a message), ms. */
  const COST_MS = 0.05;
  const busy = (): void => {
    const end = performance.now() + COST_MS;
    while (performance.now() < end);
  };
  const delivery = { ...loadConfig({ env: {}, overrides: {} }).config.websocket.delivery, ack_timeout: 0.2, ttl: 0.2 };
  const entries = (): Entry[] => Array.from({ length: COUNT }, (_, i) => newEntry({ id: `m${i}`, seq: i, target: 'u:bob', from: 'amy', group: null, pri: 1, ts: Date.now(), at: 0, attempts: 1, strategy: null, bytes: 1 }, State.INFLIGHT));

  /** Handled by the first timer after the first handler call, and in all, once `start` made COUNT items fall due together. */
  async function handledWhenDue(kind: 'scheduled' | 'unacknowledged' | 'expired', start: (timers: AckTimers, items: Entry[]) => void): Promise<{ first: number; all: number }> {
    let handled = 0;
    let first = -1;
    const count = (): void => {
      busy();
      if (handled++ === 0) setTimeout(() => (first = handled), 0);
    };
    const timers = new AckTimers(delivery, { scheduled: () => {}, unacknowledged: () => {}, expired: () => {}, [kind]: count });
    start(timers, entries());
    await until(() => (handled >= COUNT && first >= 0) || undefined, `${COUNT} ${kind}`, 30_000);
    timers.stop();
    return { first, all: handled };
  }

  for (const [kind, start] of [
    ['scheduled', (timers: AckTimers, items: Entry[]) => {
      const at = Date.now() + 100;
      for (const entry of items) timers.scheduleAt(entry, at);
      timers.arm();
    }],
    ['unacknowledged', (timers: AckTimers, items: Entry[]) => {
      // Delivered in the same millisecond (one turn's deliveries are): their deadlines are one.
      const now = Date.now();
      const clock = Date.now;
      Date.now = () => now;
      try {
        for (const entry of items) timers.hold(entry, 'bob');
      } finally {
        Date.now = clock;
      }
    }],
    ['expired', (timers: AckTimers, items: Entry[]) => {
      const since = Date.now();
      for (const entry of items) timers.wait(entry, since);
      timers.arm();
    }],
  ] as const) {
    test(`${COUNT} ${kind} at the same moment: a timer set by the first handled runs before the last is handled; none is lost`, async () => {
      const { first, all } = await handledWhenDue(kind, start);
      assert.equal(all, COUNT);
      assert.ok(first < COUNT, `all ${COUNT} were handled in one turn`);
    });
  }
});

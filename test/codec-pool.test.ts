/**
 * The codec pool (src/codec): a task gives the same result in a pool thread as inline, the pool
 * is bounded (a full or absent pool means inline work, never a refusal), and a large
 * dead-letter page is rendered in the pool into the same bytes as inline.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, test } from 'node:test';
import type { Piscina } from 'piscina';
import { answerDlqRequest, type DeadLetterStore } from '../src/broker/dlq-admin.js';
import { Codec } from '../src/codec/codec.js';
import { deflateLz4 } from '../src/codec/lz4.js';
import { CodecPool } from '../src/codec/pool.js';
import { prepare, runTask, transferablesOf, type PrepareTask } from '../src/codec/tasks.js';
import { encodeGroupMsg } from '../src/protocol/json-codec.js';
import { writeFrame } from '../src/protocol/msgpack-codec.js';
import type { DeadLetter } from '../src/store/messages.js';

const text = (n: number): string => Array.from({ length: n }, (_, i) => ['deploy', 'failed', 'on', 'main', 'again'][(i * 7) % 5]).join(' ');

function prepareTask(data: unknown): PrepareTask {
  return {
    kind: 'prepare',
    // A copy with its own buffer, as the shard makes of uWS's (writeFrame's is a view into msgpackr's, which a move would take whole).
    bytes: Uint8Array.from(writeFrame({ op: 'pub', group: 'g', data, pri: 2, ref: 'r' }, deflateLz4, 1024)),
    isBinary: true,
    msgpack: true,
    maxPayload: 1 << 20,
    envelope: { id: 'i.0.0.m1', from: 'alice', ts: 1_800_000_000_000 },
    msgpackForm: true,
    lz4Threshold: 1024,
    processorTypes: [],
    historyPatterns: [],
  };
}

describe('codec tasks, in a pool thread and inline', () => {
  test('prepare: a pub becomes its msg in JSON and as a compressed binary frame, the frame keeps everything but data', () => {
    const data = { text: text(2000) };
    const { frame, forms } = prepare(prepareTask(data));
    assert.deepEqual(frame, { op: 'pub', group: 'g', data: undefined, pri: 2, ref: 'r' });
    assert.equal(Buffer.from(forms!.json!).toString(), encodeGroupMsg('i.0.0.m1', 'alice', 'g', data, 2, 1_800_000_000_000));
    assert.equal(forms!.msgpack![0], 1, 'compressed');
    assert.equal(forms!.dataJson, null);
  });

  test('prepare: a send keeps its data as JSON text for the broker; a pub with a processor too', () => {
    const send = prepare({ ...prepareTask(null), bytes: writeFrame({ op: 'send', to: 'bob', data: { a: 1 } }) });
    assert.equal(send.forms!.dataJson, '{"a":1}');
    const processed = prepare({ ...prepareTask({ type: 'shout', text: 'x' }), processorTypes: ['shout'] });
    assert.deepEqual([processed.forms!.json, processed.forms!.dataJson, processed.forms!.type], [null, '{"type":"shout","text":"x"}', 'shout']);
  });

  test('prepare: a pub to a group that keeps history keeps its data as JSON text too (the broker gives it its offset)', () => {
    const kept = prepare({ ...prepareTask({ text: 'x' }), historyPatterns: ['room.*', 'g'] });
    assert.deepEqual([kept.forms!.json, kept.forms!.msgpack, kept.forms!.dataJson, kept.forms!.type], [null, null, '{"text":"x"}', null]);
    const other = prepare({ ...prepareTask({ text: 'x' }), historyPatterns: ['room.*', 'g2'] });
    assert.equal(other.forms!.dataJson, null, 'published by the shard');
  });

  test('the pool answers what inline work answers, bytes moved back', async () => {
    const pool = new CodecPool({ size: 1, queueLimit: 4 });
    try {
      for (const task of [prepareTask({ text: text(5000) }), { kind: 'transcode' as const, json: encodeGroupMsg('m', 'a', 'g', { t: text(3000) }, 1, 1), lz4Threshold: 1024 }]) {
        const inline = runTask(task);
        const pooled = await pool.run(structuredClone(task));
        assert.deepEqual(JSON.parse(JSON.stringify(pooled, (_k, v: unknown) => (v instanceof Uint8Array ? [...v] : v))), JSON.parse(JSON.stringify(inline, (_k, v: unknown) => (v instanceof Uint8Array ? [...v] : v))));
      }
    } finally {
      await pool.close();
    }
  });

  test('the pool threads run at the configured nice increment above the thread that made the pool', async () => {
    const niceOf = (task: string): number => Number(readFileSync(`/proc/self/task/${task}/stat`, 'latin1').split(') ')[1]!.split(' ')[16]);
    const own = niceOf(String(process.pid));
    const pool = new CodecPool({ size: 1, queueLimit: 4, nice: 7 });
    try {
      await pool.run(prepareTask({ text: 'wake the thread' }));
      const nices = readdirSync('/proc/self/task').map(niceOf);
      assert.ok(nices.includes(Math.min(19, own + 7)), `a thread at nice ${own + 7} among ${nices.join(',')}`);
    } finally {
      await pool.close();
    }
  });

  test('a result moves back only its own bytes: a frame that is a view into a larger buffer is copied out first', () => {
    // Uncompressed, the binary frame is a view into msgpackr's reused buffer.
    const result = runTask({ ...prepareTask({ text: 'hi' }), lz4Threshold: Infinity });
    assert.ok(result.kind === 'prepare' && result.forms !== null);
    const before = result.forms.msgpack!;
    assert.ok(before.byteLength < before.buffer.byteLength, 'a view, as msgpackr returns it');
    const moved = transferablesOf(result);
    const after = result.forms.msgpack!;
    assert.deepEqual([...after], [...before]);
    assert.equal(after.byteLength, after.buffer.byteLength);
    assert.ok(moved.includes(after.buffer as ArrayBuffer) && moved.every((b) => b !== before.buffer));
  });

  test('the pool holds at most queueLimit tasks; none, with size 0; none once closed', async () => {
    const pool = new CodecPool({ size: 1, queueLimit: 2 });
    const first = pool.run(prepareTask(text(10)));
    const second = pool.run(prepareTask(text(10)));
    assert.equal(pool.hasRoom(), false);
    await Promise.all([first, second]);
    assert.equal(pool.hasRoom(), true);
    await pool.close();
    assert.equal(pool.hasRoom(), false);
    assert.equal(new CodecPool({ size: 0, queueLimit: 64 }).hasRoom(), false);
  });

  test('a pool whose threads cannot start fails its tasks rather than leaving them waiting, and throws nothing at the thread that owns it', async () => {
    // The baseline: a pool that can start, from nothing to its first answer.
    const good = new CodecPool({ size: 1, queueLimit: 8 });
    const started = performance.now();
    await good.run(prepareTask(text(10)));
    const startMs = performance.now() - started;
    await good.close();
    // A module that throws as it loads, as one cut short by a build in place would.
    const worker = join(mkdtempSync(join(tmpdir(), 'ocs-codec-worker-')), 'codec.mjs');
    writeFileSync(worker, "throw new Error('this module cannot load');\n");
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown): void => void uncaught.push(err);
    process.on('uncaughtException', onUncaught);
    const pool = new CodecPool({ size: 1, queueLimit: 8, worker: pathToFileURL(worker).href });
    try {
      const tasks = Promise.allSettled([1, 2, 3].map(() => pool.run(prepareTask(text(10)))));
      const waited = new Promise<'still waiting'>((resolve) => setTimeout(() => resolve('still waiting'), 20 * startMs).unref());
      const outcome = await Promise.race([tasks, waited]);
      assert.notEqual(outcome, 'still waiting', `the tasks settled within 20x a pool's start (${Math.round(startMs)} ms)`);
      assert.deepEqual((outcome as PromiseSettledResult<unknown>[]).map((s) => s.status), ['rejected', 'rejected', 'rejected']);
      assert.deepEqual(uncaught, []);
      assert.equal(pool.pending, 0);
      assert.equal(pool.hasRoom(), true);
    } finally {
      process.off('uncaughtException', onUncaught);
      await pool.close();
    }
  });

  test('a pool thread that dies fails only the client frame it held: those queued behind it are prepared inline, to what the pool would have made', async () => {
    const codec = new Codec({ compression: true, lz4Threshold: 1024, offloadThreshold: 1024, poolSize: 1, queueLimit: 64 });
    // The pool's piscina, to end its thread as a crash would (an out-of-memory, a native fault).
    const threads = (): Piscina['threads'] => (codec as unknown as { pool: { pool: Piscina } }).pool.pool.threads;
    const asPlain = (value: unknown): unknown => JSON.parse(JSON.stringify(value, (_k, v: unknown) => (v instanceof Uint8Array ? [...v] : v)));
    try {
      // The baseline: starting the pool and its thread, which replacing a dead one costs again.
      const started = performance.now();
      await codec.prepare(prepareTask({ text: 'wake the thread' }));
      const startMs = performance.now() - started;
      const tasks = [1, 2, 3, 4].map((n) => prepareTask({ text: text(2000 + n) }));
      const inline = tasks.map((task) => asPlain(prepare({ ...task, bytes: task.bytes.slice() })));
      const results = Promise.allSettled(tasks.map((task) => codec.prepare(task)));
      for (const thread of threads()) void thread.terminate();
      const waited = new Promise<'still waiting'>((resolve) => setTimeout(() => resolve('still waiting'), 20 * startMs).unref());
      const outcome = await Promise.race([results, waited]);
      assert.notEqual(outcome, 'still waiting', `settled within 20x the pool's start (${Math.round(startMs)} ms)`);
      const settled = outcome as Awaited<typeof results>;
      // The thread may have answered the first before it ended: then the second was the one it held.
      assert.ok(settled.filter((s) => s.status === 'rejected').length <= 1, `the frame moved to the dead thread fails, the rest do not: ${settled.map((s) => s.status).join(', ')}`);
      settled.forEach((s, i) => s.status === 'fulfilled' && assert.deepEqual(asPlain(s.value), inline[i]));
    } finally {
      await codec.close();
    }
  });

  test('of a pool of two threads, one that dies fails only the frame it held: the other thread\'s, and those queued, are answered', async () => {
    const codec = new Codec({ compression: true, lz4Threshold: 1024, offloadThreshold: 1024, poolSize: 2, queueLimit: 64 });
    const threads = (): Piscina['threads'] => (codec as unknown as { pool: { pool: Piscina } }).pool.pool.threads;
    // A pub whose data is 40,000 small objects: long enough to prepare that a thread can be ended in the middle.
    const heavy = (): PrepareTask => prepareTask(Array.from({ length: 40_000 }, (_, i) => ({ word: text(1), i })));
    try {
      await Promise.all([1, 2].map(() => codec.prepare(prepareTask({ text: 'wake the threads' }))));
      assert.equal(threads().length, 2);
      // The baseline: one heavy frame, prepared in the pool.
      const started = performance.now();
      await codec.prepare(heavy());
      const taskMs = performance.now() - started;
      const tasks = [1, 2, 3, 4].map(heavy);
      const results = Promise.allSettled(tasks.map((task) => codec.prepare(task)));
      // Both threads are at a frame: one of them ends a quarter of the way through.
      await new Promise((resolve) => setTimeout(resolve, taskMs / 4));
      void threads()[0]!.terminate();
      const waited = new Promise<'still waiting'>((resolve) => setTimeout(() => resolve('still waiting'), 40 * taskMs).unref());
      const outcome = await Promise.race([results, waited]);
      assert.notEqual(outcome, 'still waiting', `settled within 40x a frame's time (${Math.round(taskMs)} ms)`);
      const statuses = (outcome as Awaited<typeof results>).map((s) => s.status);
      assert.deepEqual(statuses.filter((s) => s === 'rejected').length, 1, `only the frame the dead thread held fails: ${statuses.join(', ')}`);
    } finally {
      await codec.close();
    }
  });

  test('Codec: small work inline, large work to the pool, and inline again when the pool is full', async () => {
    const counts = { offloaded: 0, inlineFull: 0 };
    const codec = new Codec(
      { compression: true, lz4Threshold: 1024, offloadThreshold: 4096, poolSize: 1, queueLimit: 1 },
      { offloaded: () => counts.offloaded++, inlineFull: () => counts.inlineFull++ },
    );
    try {
      const small = encodeGroupMsg('m', 'a', 'g', 'hi', 1, 1);
      const large = encodeGroupMsg('m', 'a', 'g', text(2000), 1, 1);
      assert.ok(codec.transcode(small) instanceof Uint8Array, 'small: inline, at once');
      const pooled = codec.transcode(large);
      assert.ok(pooled instanceof Promise, 'large: in the pool');
      const full = codec.transcode(large);
      assert.ok(full instanceof Uint8Array, 'large while the pool is full: inline');
      assert.deepEqual([...(await pooled)], [...full]);
      assert.deepEqual(counts, { offloaded: 1, inlineFull: 1 });
    } finally {
      await codec.close();
    }
  });
});

describe('a dead-letter page rendered in the primary’s codec pool', () => {
  const letters: DeadLetter[] = Array.from({ length: 12 }, (_, i) => ({
    id: `dl${i}`,
    target: 'u:bob',
    from: 'alice',
    group: null,
    data: JSON.stringify({ text: text(3000), i }),
    pri: 1,
    ts: 1_800_000_000_000 + i,
    attempts: 5,
    reason: 'max_attempts',
    failedAt: 1_800_000_000_100 + i,
  })) as unknown as DeadLetter[];
  const store: DeadLetterStore = {
    countDead: () => letters.length,
    listDead: (limit, after) => letters.slice(after === undefined ? 0 : letters.findIndex((l) => l.id === after) + 1).slice(0, limit),
    getDead: (id) => letters.find((l) => l.id === id),
    removeDead: () => Promise.resolve(true),
    purgeDead: () => Promise.resolve(0),
  };
  const requeue = (): Promise<string> => Promise.reject(new Error('not here'));

  test('is the same page as inline, byte for byte, paged alike', async () => {
    const codec = new Codec({ compression: true, lz4Threshold: 1024, offloadThreshold: 4096, poolSize: 1, queueLimit: 64 });
    try {
      for (const path of ['/admin/dlq', '/admin/dlq?limit=5', '/admin/dlq?after=dl3']) {
        const inline = await answerDlqRequest('get', path, store, requeue, 100_000);
        const pooled = await answerDlqRequest('get', path, store, requeue, 100_000, (chunk) => codec.renderDeadLetters(chunk));
        assert.equal(pooled.json, inline.json, path);
        const page = JSON.parse(inline.json!) as { count: number; items: Array<{ id: string; data: { i: number } }>; next: string | null };
        assert.equal(page.count, 12);
        assert.ok(page.items.length > 0 && page.items[0]!.data.i >= 0);
      }
      const capped = JSON.parse((await answerDlqRequest('get', '/admin/dlq', store, requeue, 40_000, (chunk) => codec.renderDeadLetters(chunk))).json!) as { items: unknown[]; next: string | null };
      assert.ok(capped.items.length < 12 && capped.next !== null, 'a page stops at maxBytes and says where the next begins');
    } finally {
      await codec.close();
    }
  });
});

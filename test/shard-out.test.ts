/**
 * Frames to one connection in order while some wait for the codec pool (src/shard/out.ts), on a
 * real uWS socket: what an action run from the queue may do to it, and a pool thread dying.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import uWS from 'uWebSockets.js';
import WebSocket from 'ws';
import type { Piscina } from 'piscina';
import { Codec } from '../src/codec/codec.js';
import { inflateLz4 } from '../src/codec/lz4.js';
import { encodeStoredMsg } from '../src/protocol/json-codec.js';
import { readFrame } from '../src/protocol/msgpack-codec.js';
import type { Wire } from '../src/protocol/server-frames.js';
import type { Connection, Socket } from '../src/shard/connection.js';
import { MAX_QUEUED_FRAMES, Out } from '../src/shard/out.js';
import { createLogger } from '../src/util/logger.js';

describe('the queue of frames waiting for the codec pool', () => {
  const listenSockets: uWS.us_listen_socket[] = [];
  after(() => {
    for (const socket of listenSockets) uWS.us_listen_socket_close(socket);
  });

  /** A uWS server on a free port that runs `onMessage` with the socket when a client's frame arrives. */
  const serve = (conn: Connection, onMessage: (socket: Socket) => void): Promise<number> =>
    new Promise<number>((resolve) => {
      const app = uWS.App().ws('/*', {
        close: () => void (conn.closed = true),
        message: (ws) => onMessage(ws as unknown as Socket),
      });
      app.listen('127.0.0.1', 0, (token) => {
        listenSockets.push(token);
        resolve(uWS.us_socket_local_port(token));
      });
    });

  test('an action that queues again into a full queue closes the connection as a slow consumer (1013), and nothing touches the closed socket', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    const out = new Out(new Float64Array(256), createLogger('silent'));
    const conn = { outq: null, closed: false, sid: 's1' } as unknown as Connection;
    let reran = 0;
    const port = await serve(conn, (socket) => {
      let replayDone!: (wire: Wire) => void;
      // A replay in the pool, then a catch-up marker that waits while anything behind it is still in the pool (group-ops.ts).
      out.answer(socket, conn, new Promise<Wire>((r) => (replayDone = r)));
      const caughtUp = (clear: boolean): void => {
        reran++;
        if (!clear) out.after(socket, conn, caughtUp);
      };
      out.after(socket, conn, caughtUp);
      for (let i = 0; i < 10; i++) out.deliver(socket, conn, new Uint8Array([1, i]));
      out.answer(socket, conn, new Promise<Wire>(() => {})); // a history page that stays in the pool
      while (conn.outq!.length < MAX_QUEUED_FRAMES) out.deliver(socket, conn, new Uint8Array([2]));
      replayDone(new Uint8Array([9]));
    });
    const client = new WebSocket(`ws://127.0.0.1:${port}/`);
    const closed = new Promise<number>((resolve) => client.on('close', (code) => resolve(code)));
    client.on('open', () => client.send('go'));
    assert.equal(await closed, 1013);
    await new Promise((r) => setTimeout(r, 50));
    process.off('unhandledRejection', onUnhandled);
    assert.equal(reran, 1, 'the marker ran once, found the page in the pool and tried to queue again');
    assert.deepEqual(unhandled.map(String), []);
    assert.deepEqual(conn.outq ?? [], [], 'nothing waits for the closed socket');
  });
  test('a catch-up whose group\'s live messages are all ready goes ahead of a frame still in the pool: they go out at once, and it is clear; the rest keeps its order', async () => {
    const out = new Out(new Float64Array(256), createLogger('silent'));
    const conn = { outq: null, closed: false, sid: 's2' } as unknown as Connection;
    const verdicts: boolean[] = [];
    const received: number[][] = [];
    const port = await serve(conn, (socket) => {
      let replayDone!: (wire: Wire) => void;
      out.answer(socket, conn, new Promise<Wire>((r) => (replayDone = r)));
      out.after(socket, conn, (clear) => void verdicts.push(clear), 'g');
      out.deliver(socket, conn, new Uint8Array([1, 0]), 'g');
      out.answer(socket, conn, new Promise<Wire>(() => {})); // a page that stays in the pool
      out.deliver(socket, conn, new Uint8Array([2, 0])); // a direct message behind it
      out.deliver(socket, conn, new Uint8Array([1, 1]), 'g');
      out.deliver(socket, conn, new Uint8Array([3, 0]), 'other');
      // A later catch-up of the same group (a leave, then a join with since): what follows it waits for it.
      out.after(socket, conn, () => {}, 'g');
      out.deliver(socket, conn, new Uint8Array([1, 9]), 'g');
      replayDone(new Uint8Array([9]));
    });
    const client = new WebSocket(`ws://127.0.0.1:${port}/`);
    client.on('message', (data: Buffer) => received.push([...data]));
    client.on('open', () => client.send('go'));
    await new Promise((r) => setTimeout(r, 200));
    client.close();
    assert.deepEqual(verdicts, [true]);
    assert.deepEqual(received, [[9], [1, 0], [1, 1]], 'the replay, then the group\'s live messages; the rest waits behind the page');
    assert.deepEqual(
      conn.outq!.map((q) => (q.wire === null ? q.action === null ? 'pool' : 'marker' : [...(q.wire as Uint8Array)])),
      ['pool', [2, 0], [3, 0], 'marker', [1, 9]],
    );
  });

  test('a pool thread that dies with frames in the pool costs time, not frames: every one still goes out, in order', async () => {
    const codec = new Codec({ compression: true, lz4Threshold: 1024, offloadThreshold: 1024, poolSize: 1, queueLimit: 64 });
    const out = new Out(new Float64Array(256), createLogger('silent'));
    const conn = { outq: null, closed: false, sid: 's3' } as unknown as Connection;
    // Stored messages of 200 KB: each is made a binary frame in the pool.
    const stored = (n: number): string => encodeStoredMsg(`m${n}`, 'alice', null, JSON.stringify('x'.repeat(200_000 + n)), 1, n);
    // The pool's piscina, to end its thread as a crash would (an out-of-memory, a native fault).
    const threads = (): Piscina['threads'] => (codec as unknown as { pool: { pool: Piscina } }).pool.pool.threads;
    try {
      // The baseline: starting the pool and its thread, which replacing a dead one costs again.
      const started = performance.now();
      await codec.transcode(stored(0));
      const startMs = performance.now() - started;
      const received: string[] = [];
      const port = await serve(conn, (socket) => {
        for (let n = 1; n <= 4; n++) out.deliver(socket, conn, codec.transcode(stored(n)));
        for (const thread of threads()) void thread.terminate();
      });
      const client = new WebSocket(`ws://127.0.0.1:${port}/`);
      client.on('message', (data: Buffer) => received.push((readFrame(data, 1 << 24, inflateLz4) as { id: string }).id));
      client.on('open', () => client.send('go'));
      const until = performance.now() + 20 * startMs;
      while (received.length < 4 && performance.now() < until) await new Promise((r) => setTimeout(r, startMs / 4));
      client.close();
      assert.deepEqual(received, ['m1', 'm2', 'm3', 'm4'], `received within ${Math.round(until - started)} ms (the pool started in ${Math.round(startMs)} ms)`);
      assert.deepEqual(conn.outq, null, 'nothing waits any more');
    } finally {
      await codec.close();
    }
  });
});

/**
 * The frames a connection sends while a large one of its own is decoded in the codec pool
 * (src/shard/inbound.ts), on a real server: they wait, in order, bounded by bytes; an honest
 * burst behind a large frame is handled as the same burst without it is, and a flood behind one
 * is still cut off by what the waiting frames hold.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { member, type TestClient } from './helpers/client.js';
import { startInProcess } from './helpers/server.js';
import type { RunningServer } from '../src/index.js';
import type { Connection, Socket } from '../src/shard/connection.js';
import { InboundFrames, QUEUED_FRAME_BYTES, type InboundHandler } from '../src/shard/inbound.js';

/** Sends a pub of `large` (its data), then `small` small pubs, all at once; how it ended. */
async function burst(port: number, large: unknown, small: number): Promise<string> {
  const client: TestClient = await member(port, 'sender', ['g']);
  try {
    client.send({ op: 'pub', group: 'g', data: large, ref: 'large' });
    for (let i = 0; i < small; i++) client.send({ op: 'pub', group: 'g', data: i, ref: `s${i}` });
    const closed = client.closed.then(({ code, reason }) => `closed ${code} ${reason}`);
    const acked = await Promise.race([client.next((f) => f.op === 'ack' && f.ref === `s${small - 1}`, 60_000).then(() => true, () => false), closed]);
    return acked === true ? 'all acknowledged' : await closed;
  } finally {
    client.close();
  }
}

describe('frames behind a large one in the codec pool', () => {
  let server: RunningServer;
  before(async () => {
    // No frame rate limit (the test harness's default, and an operator's choice): only the queue's own bound applies.
    server = await startInProcess({ websocket: { server: { shards: 1, max_payload: 1024 * 1024 } } });
  });
  after(() => server.close());

  test('an honest burst behind a large pub is handled as the same burst is without it', async () => {
    assert.equal(await burst(server.port, 'x'.repeat(1000), 400), 'all acknowledged', 'the baseline: 400 small pubs after a small one');
    assert.equal(await burst(server.port, 'x'.repeat(100_000), 400), 'all acknowledged', 'after a pub the pool decodes');
  });
});

describe('the bound on what waits behind a large frame (InboundFrames)', () => {
  test('counts bytes and entries: small frames past the old cap of 256 wait, a flood is cut off once they hold 4 x max_payload', () => {
    const maxPayload = 64 * 1024;
    const flooded: string[] = [];
    // A pool that never answers: everything after the large frame waits.
    const codec = { offloadThreshold: 1024, offloads: () => true, prepare: () => new Promise<never>(() => {}) };
    const handler = {
      frame: () => assert.fail('nothing is handled while the large frame is in the pool'),
      prepared: () => {},
      task: () => ({ task: {} as never, msgId: null }),
      flooded: (_ws: unknown, conn: Connection, message: string) => {
        flooded.push(message);
        conn.closed = true;
      },
      tooLarge: () => {},
    };
    const inbound = new InboundFrames(codec, handler as unknown as InboundHandler, maxPayload);
    const conn = { inq: null, inqBytes: 0, closed: false, frames: { binary: false } } as unknown as Connection;
    const ws = {} as Socket;
    inbound.arrive(ws, conn, new ArrayBuffer(2048), false, 0, 0);
    const small = new ArrayBuffer(40);
    let waiting = 0;
    while (!conn.closed) {
      inbound.arrive(ws, conn, small, false, 0, 0);
      if (!conn.closed) waiting++;
    }
    assert.ok(waiting > 256, `${waiting} small frames waited`);
    assert.equal(waiting, Math.floor((4 * maxPayload - QUEUED_FRAME_BYTES) / (40 + QUEUED_FRAME_BYTES)), 'as many as 4 x max_payload holds, each with its entry');
    assert.deepEqual(flooded, [`over ${4 * maxPayload} bytes of frames sent while large frames were being decoded`]);
  });
});

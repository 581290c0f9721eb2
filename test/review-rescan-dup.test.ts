/**
 * Review of 536ee40: a connection opened while its node (N) was cut off from Redis is listed by
 * the rescan. Another node (M) routes the user's messages to N all along (N's presence is alive):
 * those that reach N after its subscriber is back and before its rescan's CONNECT went out are
 * handed to the new connection by its shard (it has its welcome, it is not held yet), and the
 * rescan then lists them (in flight, unacknowledged) to it again.
 * N reaches Redis through a proxy that can refuse it, and delays what N sends by DELAY ms (so
 * the resync's round trips take a while, as on a loaded or distant Redis).
 */
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { member, type TestClient } from './helpers/client.js';
import { announceSkip, nodeConfig, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { startProcess, type ServerProcess } from './helpers/server.js';

const skip = announceSkip('review-rescan-dup.test');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface DelayProxy {
  port: number;
  refuse: boolean;
  delayMs: number;
  close(): void;
}

async function delayProxy(target: number): Promise<DelayProxy> {
  const pairs = new Set<[Socket, Socket]>();
  const proxy: DelayProxy = {
    port: 0,
    delayMs: 0,
    get refuse() {
      return refusing;
    },
    set refuse(on: boolean) {
      refusing = on;
      if (on) for (const [a, b] of pairs) (a.resetAndDestroy(), b.resetAndDestroy());
      if (on) pairs.clear();
    },
    close: () => {
      proxy.refuse = true;
      server.close();
    },
  };
  let refusing = false;
  const server = createServer((client) => {
    if (refusing) return void client.resetAndDestroy();
    const upstream = connect(target, '127.0.0.1');
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    client.on('data', (chunk) => {
      if (proxy.delayMs === 0) upstream.write(chunk);
      else setTimeout(() => upstream.writable && upstream.write(chunk), proxy.delayMs);
    });
    upstream.on('data', (chunk) => client.write(chunk));
    const end = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const s of pair) (s.on('close', end), s.on('error', end));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  proxy.port = (server.address() as { port: number }).port;
  return proxy;
}

/** Every msg frame's data so far (batches unpacked). */
function received(client: TestClient): number[] {
  const out: number[] = [];
  for (const f of client.frames) {
    if (f.op === 'msg') out.push(f.data as number);
    if (f.op === 'batch') for (const m of f.msgs as Array<{ data: number }>) out.push(m.data);
  }
  return out;
}

describe('review: rescan of a connection opened while its node was cut off', { skip, timeout: 120_000 }, () => {
  let redis: PrivateRedis;
  let proxy: DelayProxy;
  let n: ServerProcess;
  let m: ServerProcess;
  before(async () => {
    redis = await startPrivateRedis();
    proxy = await delayProxy(redis.port);
    const extra = { websocket: { delivery: { ack_timeout: 300, max_backoff: 300 } } };
    n = await startProcess(nodeConfig(`redis://127.0.0.1:${proxy.port}`, 'rv:', 1, extra));
    m = await startProcess(nodeConfig(redis.url, 'rv:', 1, extra));
  });
  after(async () => {
    for (const p of [n, m]) if (p?.child.exitCode === null) await p.stop('SIGKILL');
    proxy?.close();
    await redis?.stop();
  });

  test('the late connection gets no message twice', async () => {
    const first = await member(n.port, 'reader');
    const sender = await member(m.port, 'sender');
    await sleep(500);
    proxy.refuse = true; // N cut off (M is not)
    await sleep(1000);
    const late = await member(n.port, 'reader');
    assert.equal(late.welcome.pending, 0, 'welcomed without Redis');
    let i = 0;
    let acks = 0;
    const stream = (async () => {
      const end = Date.now() + 5000;
      while (Date.now() < end) {
        sender.send({ op: 'send', to: 'reader', data: i, ref: `r${i}` });
        i++;
        await sleep(10);
      }
    })();
    await sleep(800);
    proxy.delayMs = Number(process.env.REVIEW_DELAY ?? 150); // N's round trips slow
    proxy.refuse = false; // N reconnects and resyncs
    await stream;
    await sleep(4000);
    for (const f of sender.frames) if (f.op === 'ack') acks++;
    const got = received(late);
    const seen = new Map<number, number>();
    for (const d of got) seen.set(d, (seen.get(d) ?? 0) + 1);
    const twice = [...seen].filter(([, c]) => c > 1).map(([d]) => d);
    const missing = Array.from({ length: i }, (_, k) => k).filter((k) => !seen.has(k));
    console.log(`sent ${i}, acked ${acks}; late got ${got.length} (${seen.size} distinct); twice: ${JSON.stringify(twice)}; missing: ${JSON.stringify(missing)}`);
    console.log(`late order head: ${JSON.stringify(got.slice(0, 60))}`);
    if (process.env.REVIEW_LOGS) for (const l of n.logs) if (l.level !== undefined && Number(l.level) >= 40 || /cluster/.test(String(l.msg))) console.log('N', JSON.stringify(l).slice(0, 300));
    first.close();
    late.close();
    sender.close();
    assert.deepEqual(twice, [], 'a message handed twice to the late connection');
    assert.deepEqual(got, Array.from({ length: i }, (_, k) => k), 'each once, in the order sent');
  });
});

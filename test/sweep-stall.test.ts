/**
 * A server process stopped for longer than idle_timeout (SIGSTOP; as a frozen or migrating VM
 * is) closes nobody for silence when it runs again: its clients' frames of that time wait in
 * the sockets, and Node runs the overdue sweep before it reads them. Before, every client was
 * closed 4408 however busy it had been.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { member } from './helpers/client.js';
import { startProcess, testConfig } from './helpers/server.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

test('clients that kept talking through a 3 s stop of the server (idle_timeout 1.5 s) stay connected', async () => {
  const server = await startProcess(testConfig({ websocket: { server: { shards: 1, idle_timeout: 1.5, ping_interval: 0 } } }));
  try {
    const clients = await Promise.all(Array.from({ length: 5 }, (_, i) => member(server.port, `talker${i}`)));
    let talking = true;
    const talk = (async () => {
      for (let t = 0; talking; t++) {
        for (const c of clients) c.send({ op: 'ping', t });
        await sleep(200);
      }
    })();
    await sleep(500);
    server.child.kill('SIGSTOP');
    await sleep(3000);
    server.child.kill('SIGCONT');
    await sleep(2500);
    talking = false;
    await talk;
    for (const c of clients) {
      const t = Math.random();
      c.send({ op: 'ping', t });
      assert.equal((await c.next((f) => f.op === 'pong' && f.t === t)).op, 'pong', 'still connected');
      c.close();
    }
  } finally {
    await server.stop();
  }
});

/**
 * The admin API takes no body, but a request may declare one: it is carried out only once that
 * body has arrived whole (src/util/http-body.ts). A review purged every dead letter with a
 * `DELETE /admin/dlq` that declared 1,000 bytes of body and was reset after 11 of them.
 * Real server process, raw sockets.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import { member } from './helpers/client.js';
import { adminJson, untilTrue } from './helpers/messaging.js';
import { startProcess, testConfig } from './helpers/server.js';

/** A request whose headers declare `declared` bytes of body, of which only `sent` goes out; the socket is left open. */
function partialRequest(port: number, method: string, path: string, declared: number, sent: string): Promise<Socket> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(`${method} ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${declared}\r\n\r\n${sent}`);
      resolve(socket);
    });
    socket.on('error', () => {});
  });
}

/** The status of a request sent whole with `body`, read from the raw answer. */
function wholeRequest(port: number, method: string, path: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(`${method} ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    });
    let text = '';
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      const status = /^HTTP\/1\.1 (\d+)/.exec(text);
      if (status !== null) {
        resolve(Number(status[1]));
        socket.destroy();
      }
    });
    socket.on('error', reject);
  });
}

const deadCount = async (port: number): Promise<number> => (await adminJson(port, 'GET', '/admin/dlq?limit=1')).body.count as number;

describe('an admin request is carried out once it has arrived whole', () => {
  test('a DELETE whose body is cut off or still coming purges nothing; one with a whole body or none does; a body over 64 KiB is refused', async () => {
    // One shard: every admin request goes to the broker over one ring, in the order sent.
    const server = await startProcess(testConfig({ websocket: { server: { shards: 1 }, delivery: { ack_timeout: 0.05, max_attempts: 1 } } }));
    try {
      const sink = await member(server.port, 'sink'); // never acks: each message is dead-lettered after one attempt
      const source = await member(server.port, 'source');
      for (let i = 0; i < 4; i++) source.send({ op: 'send', to: 'sink', data: { i } });
      await untilTrue('four dead letters', async () => (await deadCount(server.port)) === 4);

      const reset = await partialRequest(server.port, 'DELETE', '/admin/dlq', 1000, '{"confirm":');
      reset.resetAndDestroy();
      const stalled = await partialRequest(server.port, 'DELETE', '/admin/dlq', 1000, '{"confirm":');
      assert.equal(await wholeRequest(server.port, 'DELETE', '/admin/dlq', 'x'.repeat(70_000)), 400, 'a body over 64 KiB is refused');

      const [first, second] = (await adminJson(server.port, 'GET', '/admin/dlq?limit=2')).body.items as Array<{ id: string }>;
      // Sent after the cut-off and stalled purges: had either been forwarded, the broker would have emptied the queue first.
      assert.equal(await wholeRequest(server.port, 'DELETE', `/admin/dlq/${first!.id}`, '{}'), 200, 'a whole body, read and ignored');
      assert.equal(await deadCount(server.port), 3, 'neither the reset nor the stalled DELETE purged anything');
      stalled.destroy();

      const cli = await adminJson(server.port, 'DELETE', `/admin/dlq/${second!.id}`);
      assert.deepEqual([cli.status, cli.body], [200, { purged: 1 }], 'no body at all, as the dlq CLI and curl send');
      assert.equal(await deadCount(server.port), 2);
      sink.close();
      source.close();
    } finally {
      assert.equal(await server.stop(), 0, `clean exit; stderr: ${server.stderr()}`);
    }
  });
});

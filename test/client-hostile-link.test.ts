/**
 * What a server or a path can do to the SDK's connection below the frames (Node, `ws`): send
 * its close frame and then never end the TCP connection, or take longer than the heartbeat to
 * deliver one large frame. Fake servers write raw WebSocket bytes on their TCP socket.
 */
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import { until } from './helpers/messaging.js';
import { sdkClient } from './helpers/sdk.js';

/** A server that welcomes each connection, then runs `then` with it and its TCP socket. */
async function welcoming(then: (ws: WebSocket, tcp: Socket, index: number) => void): Promise<{ port: number; close(): Promise<void> }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise((resolve) => wss.once('listening', resolve));
  const sockets: Socket[] = [];
  wss.on('connection', (ws) => {
    const tcp = (ws as unknown as { _socket: Socket })._socket;
    sockets.push(tcp);
    ws.send(JSON.stringify({ op: 'welcome', user: 'u', sid: 's', shard: 0, pending: 0 }));
    then(ws, tcp, sockets.length - 1);
  });
  return {
    port: (wss.address() as { port: number }).port,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => wss.close(resolve));
    },
  };
}

/** A `ws` that takes no options, as one older than closeTimeout ignores that one. */
class NoOptions extends WebSocket {
  constructor(url: string, protocols?: string | string[]) {
    super(url, protocols);
  }
}

test('a server that sends its close frame and then neither speaks nor ends the TCP connection is dropped after a second, and the client reconnects', async () => {
  for (const WebSocketClass of [WebSocket, NoOptions]) {
    let closeSentAt = 0;
    const server = await welcoming((_ws, tcp, index) => {
      if (index > 0) return;
      setTimeout(() => {
        // 1001 (going away), then silence: the client's close frame is never read, its FIN never answered.
        tcp.write(Buffer.from([0x88, 0x02, 0x03, 0xe9]));
        tcp.pause();
        closeSentAt = Date.now();
      }, 100);
    });
    const rx = sdkClient(server.port, { user: 'u', heartbeatMs: 0, WebSocket: WebSocketClass, reconnect: { soonMs: 50 } });
    let disconnected: { code: number; at: number } | undefined;
    rx.client.once('disconnect', (d) => void (disconnected = { code: d.code, at: Date.now() }));
    try {
      await rx.client.connect();
      const { code, at } = await until(() => disconnected, `a disconnect (${WebSocketClass.name})`, 5000);
      assert.equal(code, 1001, 'the code of the server\'s close frame');
      assert.ok(at - closeSentAt < 2500, `gave up ${at - closeSentAt} ms after the close frame (${WebSocketClass.name})`);
      await until(() => (rx.client.state === 'open' && rx.client.stats.connections === 2 ? true : undefined), 'reconnected', 3000);
    } finally {
      await rx.client.close();
      await server.close();
    }
  }
});

test('one large frame arriving slowly, over several heartbeats, is not a silent path: the connection stays up and the frame arrives', async () => {
  const heartbeatMs = 150;
  const payload = Buffer.from(JSON.stringify({ op: 'msg', id: 'slow', from: 'x', data: 'x'.repeat(200_000), pri: 1, ts: 1 }));
  let done = false;
  const server = await welcoming((ws, tcp) => {
    ws.on('message', (raw) => {
      // Answered only once the raw frame is written whole: a frame of ws's own cannot go in the middle of it.
      if (done && (JSON.parse(raw.toString()) as { op: string }).op === 'ping') ws.send(JSON.stringify({ op: 'pong' }));
    });
    const head = Buffer.alloc(10);
    head[0] = 0x81; // FIN, text
    head[1] = 127; // a 64-bit length follows
    head.writeBigUInt64BE(BigInt(payload.length), 2);
    tcp.write(head);
    // 20 chunks, 60 ms apart: 1.2 s for the frame, eight heartbeats.
    const chunk = Math.ceil(payload.length / 20);
    let at = 0;
    const next = (): void => {
      tcp.write(payload.subarray(at, at + chunk));
      at += chunk;
      if (at < payload.length) setTimeout(next, 60);
      else done = true;
    };
    setTimeout(next, 60);
  });
  const rx = sdkClient(server.port, { user: 'u', reconnect: false, heartbeatMs });
  try {
    const started = Date.now();
    await rx.client.connect();
    await rx.received(1, (m) => m.id === 'slow', 5000);
    assert.ok(Date.now() - started > 4 * heartbeatMs, 'the frame took several heartbeats');
    assert.deepEqual(rx.disconnects, []);
    assert.equal(rx.client.state, 'open');
  } finally {
    await rx.client.close();
    await server.close();
  }
});

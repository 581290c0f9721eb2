/**
 * A TCP proxy between a client and the server, to break connections the ways networks do:
 * `cut()` resets every connection at once (the client sees 1006, the server a dropped socket),
 * `dropUpstream` discards what clients send (their acks are lost) while the server's bytes
 * still arrive, and `freeze` stops forwarding both ways without closing anything (a dead
 * path that only a heartbeat notices). `refuse` resets every connection, open and new, until it
 * is turned off: a peer cut off for as long as the test wants. `delayUpstreamMs` holds what
 * clients send that long (a slow or distant server: each round trip takes longer).
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * Resets `socket` (RST), or destroys it once its writing side has ended (its peer's FIN made
 * Node end it, or we did): libuv refuses to reset a socket that is shutting down (EINVAL), and
 * Node 20 then never closes the handle: no 'close', and the process hangs at exit, spinning in
 * its handle cleanup (what hung cluster-rescan-overdue.test in 7 of about 95 runs).
 */
export function resetSocket(socket: Socket): void {
  if (socket.writableEnded) socket.destroy();
  else socket.resetAndDestroy();
}

export interface TcpProxy {
  port: number;
  /** Connections currently open through the proxy. */
  readonly open: number;
  /** Discard client → server bytes (true) or forward them (false). */
  dropUpstream: boolean;
  /** Forward nothing either way, close nothing. */
  freeze: boolean;
  /** Reset every connection, the open ones now and new ones as they come. */
  refuse: boolean;
  /** Hold client → server bytes this long before forwarding them (0: at once). */
  delayUpstreamMs: number;
  /** Resets every open connection. */
  cut(): void;
  close(): Promise<void>;
}

export async function tcpProxy(targetPort: number): Promise<TcpProxy> {
  const pairs = new Set<[Socket, Socket]>();
  let refusing = false;
  const proxy = {
    port: 0,
    dropUpstream: false,
    freeze: false,
    delayUpstreamMs: 0,
    get refuse() {
      return refusing;
    },
    set refuse(on: boolean) {
      refusing = on;
      if (on) proxy.cut();
    },
    get open() {
      return pairs.size;
    },
    cut() {
      for (const [client, upstream] of pairs) {
        resetSocket(client);
        resetSocket(upstream);
      }
      pairs.clear();
    },
    close: () => new Promise<void>((resolve) => {
      proxy.cut();
      server.close(() => resolve());
    }),
  };
  const server: Server = createServer((client) => {
    if (refusing) return void resetSocket(client);
    const upstream = connect(targetPort, '127.0.0.1');
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    client.on('data', (chunk) => {
      if (proxy.freeze || proxy.dropUpstream) return;
      if (proxy.delayUpstreamMs === 0) upstream.write(chunk);
      else setTimeout(() => upstream.writable && upstream.write(chunk), proxy.delayUpstreamMs);
    });
    upstream.on('data', (chunk) => {
      if (!proxy.freeze) client.write(chunk);
    });
    const end = (): void => {
      if (!pairs.delete(pair)) return;
      client.destroy();
      upstream.destroy();
    };
    for (const socket of pair) {
      socket.on('close', end);
      socket.on('error', end);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.port = (server.address() as { port: number }).port;
  return proxy;
}

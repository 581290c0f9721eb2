/**
 * Loads Node's fetch (undici, its HTTP client and its parser) by one request to a throwaway local
 * server. The first fetch() of a process compiles all of that, holding the loop for 20-30 ms on
 * our VMs; a benchmark whose generator first fetches the server's /stats at the start of its
 * measured window delayed that second's publications by as much, and only for targets it asks
 * (not the uWS baseline), so call this once before any load.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export async function warmFetch(): Promise<void> {
  const server = createServer((_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    await (await fetch(`http://127.0.0.1:${port}/`)).text();
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

/**
 * Listening on a port the kernel picks (`server.port: 0`) when every shard must share it.
 *
 * uSockets sets SO_REUSEPORT only on a fixed port, so the port is picked first by binding a
 * probe to port 0, and the shards then listen on it. The port is free between the probe's
 * close and the first shard's bind: when the primary picked it and a shard bound it after
 * starting its thread and loading its modules, that gap was a few hundred ms, in which another
 * process binding port 0 could be given the same port. Then the shard failed to listen (E_STARTUP) or, if that process set
 * SO_REUSEPORT too (another of our servers), both shared the port and the kernel split the
 * connections between them. Binding in the same synchronous run as the probe's close leaves
 * only the microseconds between two system calls, and a port taken in them is picked again.
 */
import { createServer } from 'node:net';

/** How many ports are tried before giving up: each fails only if taken within microseconds. */
const ATTEMPTS = 5;

/**
 * Calls `bind(port)` with a port free on `host` at that moment, synchronously after the probe
 * that found it let it go; `bind` answers whether it listens. Resolves with the port bound, or
 * null when no attempt succeeded (or the probe itself could not listen).
 */
export async function bindFreePort(host: string, bind: (port: number) => boolean): Promise<number | null> {
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const bound = await new Promise<number | null>((resolve) => {
      const probe = createServer();
      probe.once('error', () => resolve(null));
      // exclusive: in a pm2 cluster-mode process the cluster primary would bind it otherwise.
      probe.listen({ port: 0, host, exclusive: true }, () => {
        const address = probe.address();
        const port = typeof address === 'object' && address !== null ? address.port : 0;
        // close() releases the port at once (libuv closes the descriptor in uv_close); the
        // callback would only come on the loop's next turn.
        probe.close();
        resolve(port > 0 && bind(port) ? port : null);
      });
    });
    if (bound !== null) return bound;
  }
  return null;
}

// A port free now on 127.0.0.1, for a server that must be told its port before it binds it (a
// pm2 app, a redis-server, a second process on the same port). Port 0 is better wherever the
// server can report the port it got.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** The low end of the kernel's ephemeral range: where connect() and listen(0) take their ports. */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) ? low : 32768;
  } catch {
    return 32768; // Linux's default; other systems are not tested on
  }
}

function listenOn(port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(null));
    probe.listen(port, '127.0.0.1', () => {
      const bound = (probe.address() as { port: number }).port;
      probe.close(() => resolve(bound));
    });
  });
}

/**
 * Chosen below the ephemeral range, at random: a port from inside it is what any outgoing
 * connection may take, and with test files running side by side another file's clients could
 * take it between the probe and the server's bind (once, with two files at a time, a pm2 app was
 * restarted once before it was ready, for a reason not logged: this rules that one out).
 */
export async function freePort(): Promise<number> {
  const high = ephemeralLow();
  const low = Math.max(1024, high - 12_000);
  if (high - low >= 1000) {
    for (let attempt = 0; attempt < 50; attempt++) {
      const port = await listenOn(low + Math.floor(Math.random() * (high - low)));
      if (port !== null) return port;
    }
  }
  const port = await listenOn(0);
  if (port === null) throw new Error('no free port on 127.0.0.1');
  return port;
}

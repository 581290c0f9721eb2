// A uWS server that floods every connection with one fixed msg frame, so the client's receive
// rate is the only limit. Used by tools/bench/wsclient-throughput.ts.
// Usage: node dist/tools/bench/lib/blast-server.js [--frame-bytes N] [--mode bulk|trickle]
//   bulk:    as fast as backpressure allows, 256 frames per cork: the client reads full 64 KiB
//            chunks, so this measures frame parsing.
//   trickle: one uncorked frame per connection per event-loop turn: the client mostly reads one
//            frame per read, as in a broadcast fan-out, so this measures per-read overhead.
// A connection is served once it sends any message, so that flooding the first connections
// cannot starve the handshakes of the later ones.
import uWS from 'uWebSockets.js';
import { listenAndAnnounce } from '../../lib/mini-server.js';

const HIGH_WATER = 1024 * 1024;
const FRAMES_PER_CORK = 256;

const frameBytes = Number(argValue('--frame-bytes')) || 180;
const mode = argValue('--mode') ?? 'bulk';
const frame = makeFrame(frameBytes);

function argValue(name: string): string | undefined {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

/** A realistic ocs.v1 `msg` frame, padded in `data.x` to the requested size. */
function makeFrame(bytes: number): Buffer {
  const data = { t: performance.timeOrigin + performance.now(), s: 1, p: 0, x: '' };
  const encode = (): string => JSON.stringify({ op: 'msg', id: 'm-000001', from: 'u1', group: 'g1', data, pri: 1, ts: Date.now() });
  data.x = 'x'.repeat(Math.max(0, bytes - encode().length));
  return Buffer.from(encode());
}

interface Conn {
  served?: boolean;
}

const served = new Set<uWS.WebSocket<Conn>>();

function pump(ws: uWS.WebSocket<Conn>): void {
  while (served.has(ws) && ws.getBufferedAmount() < HIGH_WATER) {
    ws.cork(() => {
      for (let i = 0; i < FRAMES_PER_CORK; i++) ws.send(frame);
    });
  }
}

function trickle(): void {
  for (const ws of served) if (ws.getBufferedAmount() < HIGH_WATER) ws.send(frame);
  if (served.size > 0) setImmediate(trickle);
}

const app = uWS.App().ws<Conn>('/*', {
  maxBackpressure: 64 * HIGH_WATER, // never drop: we stop at HIGH_WATER ourselves
  idleTimeout: 0,
  message: (ws) => {
    if (served.has(ws)) return;
    served.add(ws);
    if (mode === 'trickle') {
      if (served.size === 1) setImmediate(trickle);
    } else {
      pump(ws);
    }
  },
  drain: (ws) => {
    if (mode === 'bulk') pump(ws);
  },
  close: (ws) => void served.delete(ws),
});

listenAndAnnounce(app, '127.0.0.1', 0, { frameBytes: frame.length, mode });

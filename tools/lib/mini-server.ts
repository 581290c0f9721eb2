// The least a server can do to speak enough ocs.v1 for the load tester and the benchmarks, on
// one thread with plain uWS publish. Two entry points run it: the broadcast benchmark's
// yardstick (tools/bench/baseline-server.ts: the real server's CPU per delivery is compared
// with this one's, so it deliberately does nothing clever: JSON.parse each frame,
// JSON.stringify one msg frame per pub, app.publish it to the group's topic) and the load
// tester's test fixture (test/fixtures/ocs-fixture-server.ts), which turns on the options.
//
// Implements: `?user=ID` identity (401 without it), `welcome` on open, `join` -> `joined`,
// `leave` -> `left`, `pub` -> `msg` to every member (the sender too) plus `ack` when `ref` is
// given, `ping` -> `pong`. Anything else gets `err E_BAD_FRAME`. With `send: true` also `send`
// (`ack`, then `msg` with `ackReq` to each of the recipient's connections) and `ack`.
import { parentPort } from 'node:worker_threads';
import uWS from 'uWebSockets.js';
import type { ErrorCode, ErrorReason } from '../../src/protocol/errors.js';
import { bindFreePort } from '../../src/util/free-port.js';

export interface MiniServerOptions {
  /** Implement `send` and `ack`; without it they are unknown ops, like a server without them. */
  send?: boolean;
  /** Serve each connection's frames one at a time, this many ms each: a deliberately slow server. */
  delayMs?: number;
  /**
   * Ping a connection after 20 s without inbound traffic, as the real server's default
   * ping_interval does (uWS's own pings: idleTimeout 28 leaves 20 s before the ping and 8 s for
   * the pong). Without it uWS's default idleTimeout of 120 s pings after 104 s of silence.
   */
  pings?: boolean;
  /** Speak TLS (wss://) with this PEM certificate and key, as uWS's SSLApp does. */
  tls?: { certFile: string; keyFile: string };
  /** The `shard` its `welcome` names (default 0): which of several such servers on one port took the connection. */
  shard?: number;
  /**
   * Called with each pub's `msg` frame after it went to this server's subscribers: the frame
   * is encoded once, as bytes, to be sent to the same group's members on other threads
   * (thread-forwarder.ts). Without it the frame is published as the string JSON.stringify made.
   */
  forward?: (group: string, frame: Uint8Array) => void;
}

export interface MiniServer {
  app: uWS.TemplatedApp;
  /** Connections open now. */
  connections(): number;
  /** Closes every connection: a worker thread may end only once its uWS sockets are closed. */
  closeAll(): void;
}

interface Session {
  user: string;
  sid: string;
  /** When this connection's previous frame finishes being served (slow mode). */
  busyUntil: number;
}

interface ClientFrame {
  op?: unknown;
  group?: unknown;
  data?: unknown;
  ref?: unknown;
  t?: unknown;
  to?: unknown;
  pri?: unknown;
}

const PROTOCOL_JSON = 'ocs.v1.json';

export function createMiniServer(options: MiniServerOptions = {}): MiniServer {
  const idPrefix = `${process.pid.toString(36)}-`;
  let lastId = 0;
  let lastSid = 0;
  let open = 0;
  /** With `send`: each user's open connections. */
  const byUser = new Map<string, Set<uWS.WebSocket<Session>>>();
  const sockets = new Set<uWS.WebSocket<Session>>();
  const shard = options.shard ?? 0;
  const forward = options.forward;
  const app = options.tls ? uWS.SSLApp({ cert_file_name: options.tls.certFile, key_file_name: options.tls.keyFile }) : uWS.App();

  const handle = (ws: uWS.WebSocket<Session>, message: ArrayBuffer, isBinary: boolean): void => {
    let frame: ClientFrame;
    try {
      frame = JSON.parse(Buffer.from(message).toString('utf8')) as ClientFrame;
    } catch {
      sendError(ws, 'E_BAD_FRAME', 'not valid JSON');
      return;
    }
    if (isBinary || typeof frame !== 'object' || frame === null) {
      sendError(ws, 'E_BAD_FRAME', 'not an object');
      return;
    }
    const ref = typeof frame.ref === 'string' ? frame.ref : undefined;
    switch (frame.op) {
      case 'join':
        if (typeof frame.group !== 'string') return sendError(ws, 'E_BAD_FRAME', 'group must be a string', ref);
        ws.subscribe(frame.group);
        ws.send(JSON.stringify({ op: 'joined', group: frame.group, ref }));
        return;
      case 'leave':
        if (typeof frame.group !== 'string') return sendError(ws, 'E_BAD_FRAME', 'group must be a string', ref);
        ws.unsubscribe(frame.group);
        ws.send(JSON.stringify({ op: 'left', group: frame.group, ref }));
        return;
      case 'pub': {
        if (typeof frame.group !== 'string') return sendError(ws, 'E_BAD_FRAME', 'group must be a string', ref);
        const id = idPrefix + (++lastId).toString(36);
        const pri = typeof frame.pri === 'number' ? frame.pri : 1;
        const msg = { op: 'msg', id, from: ws.getUserData().user, group: frame.group, data: frame.data, pri, ts: Date.now() };
        // app.publish, not ws.publish: the protocol delivers to the sender too.
        if (forward === undefined) app.publish(frame.group, JSON.stringify(msg));
        else {
          const bytes = Buffer.from(JSON.stringify(msg));
          app.publish(frame.group, bytes);
          forward(frame.group, bytes);
        }
        if (ref !== undefined) ws.send(JSON.stringify({ op: 'ack', ref, id }));
        return;
      }
      case 'ping':
        ws.send(JSON.stringify({ op: 'pong', t: frame.t, st: Date.now() }));
        return;
      case 'send':
        if (!options.send) break;
        if (typeof frame.to !== 'string') return sendError(ws, 'E_BAD_FRAME', 'to must be a string', ref);
        {
          const id = idPrefix + (++lastId).toString(36);
          const pri = typeof frame.pri === 'number' ? frame.pri : 1;
          const msg = JSON.stringify({ op: 'msg', id, from: ws.getUserData().user, ackReq: true, data: frame.data, pri, ts: Date.now() });
          ws.send(JSON.stringify({ op: 'ack', ref, id }));
          for (const target of byUser.get(frame.to) ?? []) target.send(msg);
        }
        return;
      case 'ack':
        if (!options.send) break;
        return;
    }
    sendError(ws, 'E_BAD_FRAME', 'unknown op', ref, 'unknown_op');
  };

  // Decided once: the benchmark's baseline runs `handle` itself, with nothing in front of it.
  const delayMs = options.delayMs ?? 0;
  const message =
    delayMs > 0
      ? (ws: uWS.WebSocket<Session>, message: ArrayBuffer, isBinary: boolean): void => {
          // One frame at a time per connection, delayMs each, in order. uWS reuses `message`
          // after this returns, so it is copied.
          const copy = message.slice(0);
          const session = ws.getUserData();
          const now = Date.now();
          session.busyUntil = Math.max(now, session.busyUntil) + delayMs;
          setTimeout(() => {
            // A closed uWS socket must not be touched again.
            if (!closedSockets.has(ws)) handle(ws, copy, isBinary);
          }, session.busyUntil - now);
        }
      : handle;
  const closedSockets = new WeakSet<uWS.WebSocket<Session>>();

  app.ws<Session>('/ws', {
    idleTimeout: options.pings ? 28 : 120,
    sendPingsAutomatically: true,
    maxPayloadLength: 64 * 1024,
    maxBackpressure: 1024 * 1024,
    compression: uWS.DISABLED,

    upgrade: (res, req, context) => {
      const user = req.getQuery('user');
      if (!user) {
        res.writeStatus('401 Unauthorized').end('missing ?user=');
        return;
      }
      const offered = req.getHeader('sec-websocket-protocol');
      if (offered && !offered.split(',').some((p) => p.trim() === PROTOCOL_JSON)) {
        res.writeStatus('400 Bad Request').end(`only ${PROTOCOL_JSON} is supported`);
        return;
      }
      res.upgrade<Session>(
        { user, sid: `s${++lastSid}`, busyUntil: 0 },
        req.getHeader('sec-websocket-key'),
        offered ? PROTOCOL_JSON : '',
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },

    open: (ws) => {
      open++;
      sockets.add(ws);
      const { user, sid } = ws.getUserData();
      if (options.send) {
        let set = byUser.get(user);
        if (!set) byUser.set(user, (set = new Set()));
        set.add(ws);
      }
      ws.send(JSON.stringify({ op: 'welcome', user, sid, shard, pending: 0 }));
    },

    message,

    close: (ws) => {
      open--;
      sockets.delete(ws);
      if (delayMs > 0) closedSockets.add(ws);
      if (options.send) byUser.get(ws.getUserData().user)?.delete(ws);
    },
  });

  return {
    app,
    connections: () => open,
    closeAll: () => {
      for (const ws of [...sockets]) ws.close();
    },
  };
}

function sendError(ws: uWS.WebSocket<Session>, code: ErrorCode, message: string, ref?: string, reason?: ErrorReason): void {
  ws.send(JSON.stringify({ op: 'err', code, message, ref, reason }));
}

/**
 * Listens on host:port and logs one JSON line {"msg":"ready","port":N,...extra} on stdout, like
 * the real server; exits on SIGTERM. Exits 1 when it cannot listen.
 */
export function listenAndAnnounce(app: uWS.TemplatedApp, host: string, port: number, extra: Record<string, unknown> = {}): void {
  app.listen(host, port, (listenSocket) => {
    if (!listenSocket) {
      console.log(JSON.stringify({ level: 60, msg: 'listen failed', host, port }));
      process.exit(1);
    }
    const bound = uWS.us_socket_local_port(listenSocket);
    console.log(JSON.stringify({ level: 30, time: Date.now(), msg: 'ready', port: bound, ...extra }));
    process.once('SIGTERM', () => {
      uWS.us_listen_socket_close(listenSocket);
      process.exit(0);
    });
  });
}

/**
 * In a worker thread: listens on host:port and posts `{ port }` to the parent (`{ port: null }`
 * when it cannot). Several threads share one port as the real server's shards do: uSockets sets
 * SO_REUSEPORT only on a fixed port, so port 0 is picked first (bindFreePort). A message from the
 * parent closes the listen socket and every connection (`closeAll`): the thread ends when
 * nothing is left open (one that ends with uWS sockets open aborts the process).
 */
export async function listenInWorker(app: uWS.TemplatedApp, host: string, port: number, closeAll: () => void): Promise<void> {
  const parent = parentPort;
  if (parent === null) throw new Error('listenInWorker: not in a worker thread');
  let listenSocket: uWS.us_listen_socket | null = null;
  // uWS calls back before listen() returns.
  const bind = (p: number): boolean => {
    app.listen(host, p, (socket) => void (listenSocket = socket || null));
    return listenSocket !== null;
  };
  const bound = port === 0 ? await bindFreePort(host, bind) : bind(port) ? port : null;
  parent.postMessage({ port: bound });
  if (listenSocket === null) return;
  const opened: uWS.us_listen_socket = listenSocket;
  parent.once('message', () => {
    uWS.us_listen_socket_close(opened);
    closeAll();
    parent.close();
  });
}

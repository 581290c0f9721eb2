// The broadcast benchmark's yardstick: the least a server can do to speak enough ocs.v1 for
// the benchmark, on one thread, with plain uWS publish. The real server's CPU per delivery is
// compared with this one's, so it deliberately does nothing clever: JSON.parse each frame,
// JSON.stringify one msg frame per pub, app.publish it to the group's topic.
//
// Implements: `?user=ID` identity (401 without it), `welcome` on open, `join` -> `joined`,
// `leave` -> `left`, `pub` -> `msg` to every member (the sender too) plus `ack` when `ref` is
// given, `ping` -> `pong`. Anything else gets `err E_BAD_FRAME`.
// Usage: node dist/tools/bench/baseline-server.js [--host 127.0.0.1] [--port 0]
// Logs one JSON line {"msg":"ready","port":N,"shards":1} on stdout, like the real server.
import { parseArgs } from 'node:util';
import uWS from 'uWebSockets.js';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
  },
});

interface Session {
  user: string;
  sid: string;
}

interface ClientFrame {
  op?: unknown;
  group?: unknown;
  data?: unknown;
  ref?: unknown;
  t?: unknown;
}

const PROTOCOL_JSON = 'ocs.v1.json';
const idPrefix = `${process.pid.toString(36)}-`;
let lastId = 0;
let lastSid = 0;

const app = uWS.App();

app.ws<Session>('/ws', {
  idleTimeout: 120,
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
      { user, sid: `s${++lastSid}` },
      req.getHeader('sec-websocket-key'),
      offered ? PROTOCOL_JSON : '',
      req.getHeader('sec-websocket-extensions'),
      context,
    );
  },

  open: (ws) => {
    const { user, sid } = ws.getUserData();
    ws.send(JSON.stringify({ op: 'welcome', user, sid, shard: 0, pending: 0 }));
  },

  message: (ws, message, isBinary) => {
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
        const msg = { op: 'msg', id, from: ws.getUserData().user, group: frame.group, data: frame.data, pri: 1, ts: Date.now() };
        // app.publish, not ws.publish: the protocol delivers to the sender too.
        app.publish(frame.group, JSON.stringify(msg));
        if (ref !== undefined) ws.send(JSON.stringify({ op: 'ack', ref, id }));
        return;
      }
      case 'ping':
        ws.send(JSON.stringify({ op: 'pong', t: frame.t, st: Date.now() }));
        return;
      default:
        sendError(ws, 'E_BAD_FRAME', 'unknown op', ref);
    }
  },
});

function sendError(ws: uWS.WebSocket<Session>, code: string, message: string, ref?: string): void {
  ws.send(JSON.stringify({ op: 'err', code, message, ref }));
}

app.listen(values.host!, Number(values.port), (listenSocket) => {
  if (!listenSocket) {
    console.log(JSON.stringify({ level: 60, msg: 'listen failed', host: values.host, port: values.port }));
    process.exit(1);
  }
  const port = uWS.us_socket_local_port(listenSocket);
  console.log(JSON.stringify({ level: 30, time: Date.now(), msg: 'ready', port, shards: 1 }));
  process.once('SIGTERM', () => {
    uWS.us_listen_socket_close(listenSocket);
    process.exit(0);
  });
});

// The broadcast benchmark's yardstick: the small single-threaded ocs.v1 server of
// tools/lib/mini-server.ts with nothing turned on (see there for what it does and why).
// Usage: node dist/tools/bench/baseline-server.js [--host 127.0.0.1] [--port 0] [--worker] [--pings]
//   [--tls-cert FILE --tls-key FILE]
// Logs one JSON line {"msg":"ready","port":N,"shards":1} on stdout, like the real server.
// --worker: the same server in a worker thread, the main thread idle beside it (the real
// server's shape: a shard is a worker thread), to tell what the thread layout costs.
// --pings: a connection is pinged after 20 s without inbound traffic, as the real server's
// default ping_interval does (mini-server.ts).
// --tls-cert, --tls-key: wss:// (uWS's SSLApp), the yardstick of the real server with TLS.
import { isMainThread, Worker } from 'node:worker_threads';
import { parseArgs } from 'node:util';
import { createMiniServer, listenAndAnnounce } from '../lib/mini-server.js';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    worker: { type: 'boolean', default: false },
    pings: { type: 'boolean', default: false },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
  },
});
const tls = values['tls-cert'] && values['tls-key'] ? { certFile: values['tls-cert'], keyFile: values['tls-key'] } : undefined;

if (values.worker && isMainThread) {
  const tlsArgs = tls ? ['--tls-cert', tls.certFile, '--tls-key', tls.keyFile] : [];
  const worker = new Worker(new URL(import.meta.url), { argv: ['--host', values.host, '--port', values.port, ...(values.pings ? ['--pings'] : []), ...tlsArgs] });
  worker.on('error', (err) => {
    console.error(err);
    process.exit(1);
  });
  worker.on('exit', (code) => process.exit(code));
  // A thread that ends with uWS sockets open aborts the process: the worker closes them first.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => worker.postMessage('stop'));
} else {
  const server = createMiniServer({ pings: values.pings, tls });
  listenAndAnnounce(server.app, values.host, Number(values.port), { shards: 1 }, server.closeAll);
}

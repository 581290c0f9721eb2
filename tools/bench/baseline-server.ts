// The broadcast benchmark's yardstick: the small single-threaded ocs.v1 server of
// tools/lib/mini-server.ts with nothing turned on (see there for what it does and why).
// Usage: node dist/tools/bench/baseline-server.js [--host 127.0.0.1] [--port 0] [--worker]
//   [--threads N [--spread]] [--pings] [--tls-cert FILE --tls-key FILE]
// Logs one JSON line {"msg":"ready","port":N,"shards":N} on stdout, like the real server.
// --worker: the same server in a worker thread, the main thread idle beside it (the real
// server's shape: a shard is a worker thread), to tell what the thread layout costs.
// --threads N: N such worker threads on one port, as the real server's shards are (the kernel
// gives each connection to one of them); `welcome` names a connection's thread as its `shard`.
// Without --spread each thread publishes to its own connections only: a group lives on one
// thread, so it is the yardstick of two shards with each group on one of them (routing by
// interest's case).
// --spread (with --threads): each pub also goes to the group's members on the other threads,
// over the real server's rings and doorbells (tools/lib/thread-forwarder.ts): the yardstick of
// two shards with every group's members on both, as the kernel spreads them.
// --pings: a connection is pinged after 20 s without inbound traffic, as the real server's
// default ping_interval does (mini-server.ts).
// --tls-cert, --tls-key: wss:// (uWS's SSLApp), the yardstick of the real server with TLS.
import { isMainThread, Worker, workerData } from 'node:worker_threads';
import { createMiniServer, listenAndAnnounce, listenInWorker } from '../lib/mini-server.js';
import { toolArgs } from '../lib/cli.js';
import { createForwarderBuffers, ThreadForwarder, type ForwarderBuffers } from '../lib/thread-forwarder.js';

interface ThreadData {
  shard: number;
  port: number;
  /** With --spread: the rings between the threads. */
  buffers: ForwarderBuffers | null;
}

const values = toolArgs(
  {
    command: 'node dist/tools/bench/baseline-server.js',
    about: "The broadcast benchmark's yardstick: a small single-threaded ocs.v1 server on uWS with nothing turned on (tools/lib/mini-server.ts). Logs one JSON line {\"msg\":\"ready\",\"port\":N,\"shards\":N} on stdout, like the real server.",
    options: {
      host: { type: 'string', default: '127.0.0.1', value: 'ADDRESS', help: 'address to listen on' },
      port: { type: 'int', default: 0, help: 'port to listen on; 0: any free one' },
      worker: { type: 'boolean', help: 'the server in a worker thread, the main thread idle beside it' },
      threads: { type: 'int', default: 0, help: 'N worker threads on one port, each group on one unless --spread (at most 64)' },
      spread: { type: 'boolean', help: "with --threads: a pub also goes to its group's members on the other threads, over shared-memory rings" },
      pings: { type: 'boolean', help: 'ping a connection after 20 s without inbound traffic, as the real server does' },
      'tls-cert': { type: 'string', value: 'FILE', help: 'wss:// with this certificate (and --tls-key)' },
      'tls-key': { type: 'string', value: 'FILE', help: "the certificate's private key" },
    },
  },
  (v) => {
    if (v.threads > 64) throw new Error(`--threads must be at most 64, got ${v.threads}`);
    if (v.spread && v.threads < 2) throw new Error('--spread needs --threads 2 or more');
    if ((v['tls-cert'] === undefined) !== (v['tls-key'] === undefined)) throw new Error('--tls-cert and --tls-key go together');
  },
);
const tls = values['tls-cert'] && values['tls-key'] ? { certFile: values['tls-cert'], keyFile: values['tls-key'] } : undefined;
const threads = values.worker ? Math.max(1, values.threads) : values.threads;

if (!isMainThread) {
  const { shard, port, buffers } = workerData as ThreadData;
  let forwarder: ThreadForwarder | null = null;
  const server = createMiniServer({ pings: values.pings, tls, shard, forward: buffers ? (group, frame) => forwarder!.forward(group, frame) : undefined });
  if (buffers) forwarder = new ThreadForwarder(buffers, shard, (topic, frame) => server.app.publish(topic, frame));
  await listenInWorker(server.app, values.host, port, () => {
    forwarder?.stop();
    server.closeAll();
  });
} else if (threads === 0) {
  const server = createMiniServer({ pings: values.pings, tls });
  listenAndAnnounce(server.app, values.host, values.port, { shards: 1 });
} else {
  await startThreads(threads);
}

/** Starts the threads one after the other (the first picks the port when it is 0, the rest share it), then logs "ready". */
async function startThreads(count: number): Promise<void> {
  const workers: Worker[] = [];
  // A thread that ends with uWS sockets open aborts the process: each closes them first.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => workers.forEach((w) => w.postMessage('stop')));
  let port = values.port;
  const buffers = values.spread ? createForwarderBuffers(count) : null;
  for (let shard = 0; shard < count; shard++) {
    const data: ThreadData = { shard, port, buffers };
    const worker = new Worker(new URL(import.meta.url), { argv: process.argv.slice(2), workerData: data });
    workers.push(worker);
    worker.on('error', (err) => {
      console.error(err);
      process.exit(1);
    });
    // Once every thread has ended (stopped), the process ends by itself.
    worker.on('exit', (code) => void (code !== 0 && process.exit(code)));
    const bound = await new Promise<number | null>((resolve) => worker.once('message', (m: { port: number | null }) => resolve(m.port)));
    if (bound === null) {
      console.log(JSON.stringify({ level: 60, msg: 'listen failed', host: values.host, port, shard }));
      process.exit(1);
    }
    port = bound;
  }
  console.log(JSON.stringify({ level: 30, time: Date.now(), msg: 'ready', port, shards: count }));
}

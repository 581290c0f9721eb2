// The broadcast benchmark's yardstick: the small single-threaded ocs.v1 server of
// tools/lib/mini-server.ts with nothing turned on (see there for what it does and why).
// Usage: node dist/tools/bench/baseline-server.js [--host 127.0.0.1] [--port 0]
// Logs one JSON line {"msg":"ready","port":N,"shards":1} on stdout, like the real server.
import { parseArgs } from 'node:util';
import { createMiniServer, listenAndAnnounce } from '../lib/mini-server.js';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
  },
});

listenAndAnnounce(createMiniServer().app, values.host, Number(values.port), { shards: 1 });

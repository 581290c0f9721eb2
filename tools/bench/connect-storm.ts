/**
 * What a reconnect storm costs the server: every client connecting at once (after a deploy or
 * a network blip), each connection upgraded, welcomed and joined to a group. Per target, one
 * server and several storms in a row, all clients closed between them: the first storm meets a
 * fresh process (its JavaScript not yet compiled by V8's optimiser, as after a deploy), the
 * others a warm one (as after a blip).
 *
 *   npm run bench:connect [-- --connections 2000 --concurrency 200 --storms 4
 *     --targets baseline,shards1,baseline-tls,shards1-tls]
 *
 * Prints JSON: per target and storm, the server's CPU per connection (all threads, /proc, from
 * the first attempt until every client joined) and how long the storm took; per target the
 * first storm's figure and the median [min..max] of the others, and that median over the uWS
 * baseline's (`baseline`, or `baseline-tls` for a TLS target). The targets are bench:broadcast's
 * (tools/bench/lib/broadcast-targets.ts): `-tls` ones speak wss:// with a certificate made for
 * the run.
 */
import { processCpuSeconds } from '../lib/proc.js';
import { startServer } from '../lib/server-process.js';
import { connectWs, type WsClient } from '../wsclient/client.js';
import { prepareTarget, TARGET_NAMES, usesTls, type PreparedTarget, type TargetName } from './lib/broadcast-targets.js';
import { spread, type Spread } from './lib/repetitions.js';
import { toolArgs } from '../lib/cli.js';

const {
  connections: CONNECTIONS,
  concurrency: CONCURRENCY,
  storms: STORMS,
  groups: GROUPS,
  targets,
} = toolArgs({
  command: 'npm run bench:connect --',
  about: "What a reconnect storm costs the server: every client connecting at once, upgraded, welcomed and joined; per target the first (cold) storm and the median of the others, against the uWS baseline's. JSON on stdout.",
  options: {
    connections: { type: 'int', default: 2000, min: 1, help: 'clients in each storm' },
    concurrency: { type: 'int', default: 200, min: 1, help: 'connections opened at once' },
    storms: { type: 'int', default: 4, min: 2, help: 'storms per target (one cold, the rest warm)' },
    groups: { type: 'int', default: 20, min: 1, help: 'groups the clients join' },
    targets: { type: 'names', known: TARGET_NAMES, default: 'baseline,shards1,baseline-tls,shards1-tls', help: "bench:broadcast's targets; -tls ones speak wss://" },
  },
});
/** Closed connections' sockets take a moment to go: the next storm starts after it. */
const SETTLE_MS = 1500;

const log = (line: string): void => void process.stderr.write(`${line}\n`);
const round = (x: number): number => Math.round(x * 10) / 10;

interface Storm {
  cpuUsPerConnection: number;
  ms: number;
}

/** Opens `CONNECTIONS` clients, CONCURRENCY at a time, each until its `joined`; then closes them all (and lets them go, when `settle`: another storm follows). */
async function storm(target: PreparedTarget, port: number, pid: number, settle: boolean): Promise<Storm> {
  const clients: WsClient[] = [];
  let next = 0;
  const cpuBefore = processCpuSeconds(pid) ?? NaN;
  const started = performance.now();
  const one = (c: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const ws = connectWs({
        host: '127.0.0.1',
        port,
        path: `${target.endpoint}?user=u${c}`,
        ...(target.ca ? { tls: { ca: target.ca } } : {}),
        onMessage: (payload) => {
          const head = payload.toString('latin1', 0, Math.min(payload.length, 16));
          if (head.startsWith('{"op":"welcome"')) ws.send(`{"op":"join","group":"g${c % GROUPS}","ref":"j"}`);
          else if (head.startsWith('{"op":"joined"')) resolve();
          else if (head.startsWith('{"op":"err"')) reject(new Error(`connection ${c}: ${payload.toString()}`));
        },
        onError: reject,
      });
      clients.push(ws);
    });
  const worker = async (): Promise<void> => {
    while (next < CONNECTIONS) await one(next++);
  };
  try {
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const cpuUs = ((processCpuSeconds(pid) ?? NaN) - cpuBefore) * 1e6;
    return { cpuUsPerConnection: round(cpuUs / CONNECTIONS), ms: Math.round(performance.now() - started) };
  } finally {
    for (const ws of clients) ws.close();
    if (settle) await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  }
}

interface TargetResult {
  target: TargetName;
  storms: Storm[];
  cold: number;
  warm: Spread | null;
}

async function measure(name: TargetName): Promise<TargetResult> {
  const target = prepareTarget(name, CONNECTIONS);
  const server = await startServer(target.argv);
  try {
    const storms: Storm[] = [];
    for (let i = 0; i < STORMS; i++) {
      storms.push(await storm(target, server.port, server.pid, i < STORMS - 1));
      log(`${name} storm ${i + 1}: ${storms.at(-1)!.cpuUsPerConnection} µs CPU per connection, ${storms.at(-1)!.ms} ms`);
    }
    return { target: name, storms, cold: storms[0]!.cpuUsPerConnection, warm: spread(storms.slice(1).map((s) => s.cpuUsPerConnection)) };
  } finally {
    await server.stop();
    target.cleanup();
  }
}

const results: TargetResult[] = [];
for (const name of targets) results.push(await measure(name));
const warmOf = (name: TargetName): number | undefined => results.find((r) => r.target === name)?.warm?.median;
const summary = results.map((r) => {
  const base = warmOf(usesTls(r.target) ? 'baseline-tls' : 'baseline');
  return { target: r.target, coldUsPerConnection: r.cold, warmUsPerConnection: r.warm, warmVsBaseline: base && r.warm && r.target !== 'baseline' && r.target !== 'baseline-tls' ? Math.round((r.warm.median / base) * 100) / 100 : null };
});
for (const s of summary) log(`${s.target}: cold ${s.coldUsPerConnection} µs, warm ${s.warmUsPerConnection?.median} [${s.warmUsPerConnection?.min}..${s.warmUsPerConnection?.max}] µs per connection${s.warmVsBaseline ? ` (x${s.warmVsBaseline} of its baseline)` : ''}`);
console.log(JSON.stringify({ benchmark: 'connect-storm', connections: CONNECTIONS, concurrency: CONCURRENCY, groups: GROUPS, storms: STORMS, results, summary }, null, 2));

// How many messages per second one core can receive with tools/wsclient/client.ts, against the
// `ws` package. A uWS server (tools/bench/lib/blast-server.ts, pinned to CPU 0) sends msg frames as
// fast as backpressure allows; this process (pinned to CPU 1) counts them.
// Usage: npm run bench:wsclient -- [--clients ours,ws] [--connections 1,200] [--seconds 5]
//        [--frame-bytes 180] [--mode bulk|trickle] [--parse]
//   --mode: bulk fills 64 KiB reads (parsing cost); trickle sends one frame per connection per
//           server loop turn, so most reads hold one frame (per-read cost, as in a fan-out).
//   --parse: also run the broadcast benchmark's delivery parser on every frame.
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { connectWs, type WsClient } from '../wsclient/client.js';
import { parseDeliveries } from './lib/deliveries.js';
import { pinningReport, reexecPinnedGenerator, serverPinPrefix } from './lib/pinning.js';
import { startServer } from '../lib/server-process.js';
import { toolArgs } from '../lib/cli.js';

const values = toolArgs({
  command: 'npm run bench:wsclient --',
  about: "How many messages a second one core receives with the benchmarks' own WebSocket client (tools/wsclient) against the `ws` package, a uWS server sending as fast as backpressure allows. JSON on stdout.",
  options: {
    clients: { type: 'names', known: ['ours', 'ws'] as const, default: 'ours,ws', help: 'clients measured' },
    connections: { type: 'ints', default: '1,200', min: 1, help: 'connection counts measured' },
    seconds: { type: 'number', default: 5, min: 0.1, help: 'measured seconds per case' },
    'frame-bytes': { type: 'int', default: 180, min: 2, help: 'bytes of each frame' },
    mode: { type: 'choice', known: ['bulk', 'trickle'] as const, default: 'bulk', help: 'bulk fills 64 KiB reads (parsing cost); trickle sends one frame per connection per server loop turn (per-read cost, as in a fan-out)' },
    parse: { type: 'boolean', help: "also run the broadcast benchmark's delivery parser on every frame" },
  },
});
reexecPinnedGenerator();

const seconds = values.seconds;
const mode = values.mode;
const WARMUP_MS = 1000;

interface Case {
  client: string;
  connections: number;
  messagesPerSecond: number;
  /** Share of one core this process used while counting. */
  generatorCpu: number;
  /** Receive capacity of one full core: messages/s divided by the core share used. */
  messagesPerCoreSecond: number;
  /** With --parse: the parser found a stamp in every message received. */
  parsedAll?: boolean;
}

let received = 0;
/** Stamps the parser found; with --parse it must equal the messages received. */
let parsed = 0;
const countParsed = (): void => void parsed++;
const onPayload = values.parse
  ? (payload: Buffer): void => {
      received++;
      parseDeliveries(payload, countParsed);
    }
  : (): void => void received++;

async function openOurs(port: number, connections: number): Promise<() => void> {
  const clients: WsClient[] = [];
  await Promise.all(
    Array.from({ length: connections }, () =>
      new Promise<void>((resolve, reject) => {
        clients.push(
          connectWs({ host: '127.0.0.1', port, path: '/', onOpen: resolve, onError: reject, onMessage: onPayload }),
        );
      }),
    ),
  );
  for (const c of clients) c.send('go');
  return () => clients.forEach((c) => c.destroy());
}

async function openWs(port: number, connections: number): Promise<() => void> {
  const clients: WebSocket[] = [];
  await Promise.all(
    Array.from({ length: connections }, () =>
      new Promise<void>((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
        ws.on('open', resolve).on('error', reject).on('message', (data) => onPayload(data as Buffer));
        clients.push(ws);
      }),
    ),
  );
  for (const c of clients) c.send('go');
  return () => clients.forEach((c) => c.terminate());
}

async function measure(client: string, connections: number): Promise<Case> {
  const server = await startServer([
    ...serverPinPrefix(),
    process.execPath,
    fileURLToPath(new URL('./lib/blast-server.js', import.meta.url)),
    '--frame-bytes',
    String(values['frame-bytes']),
    '--mode',
    mode,
  ]);
  try {
    const closeAll = await (client === 'ws' ? openWs : openOurs)(server.port, connections);
    await new Promise((r) => setTimeout(r, WARMUP_MS));
    const startCount = received;
    const startParsed = parsed;
    const startCpu = process.cpuUsage();
    const startAt = performance.now();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const count = received - startCount;
    const parsedCount = parsed - startParsed;
    const cpu = process.cpuUsage(startCpu);
    const elapsedMs = performance.now() - startAt;
    closeAll();
    const share = (cpu.user + cpu.system) / 1000 / elapsedMs;
    const rate = (count * 1000) / elapsedMs;
    return {
      client,
      connections,
      messagesPerSecond: Math.round(rate),
      generatorCpu: round2(share),
      messagesPerCoreSecond: Math.round(rate / Math.max(share, 0.01)),
      ...(values.parse ? { parsedAll: parsedCount === count } : {}),
    };
  } finally {
    await server.stop();
  }
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

const cases: Case[] = [];
for (const connections of values.connections) {
  for (const client of values.clients) {
    process.stderr.write(`${client} x ${connections} connections...\n`);
    const result = await measure(client, connections);
    process.stderr.write(`  ${result.messagesPerSecond} msg/s at ${result.generatorCpu} core\n`);
    cases.push(result);
  }
}
console.log(
  JSON.stringify(
    { frameBytes: values['frame-bytes'], mode, parse: values.parse, seconds, pinning: pinningReport(), cases },
    null,
    2,
  ),
);

/**
 * What the client SDK costs per received message: CPU of a receiving process on the SDK
 * (OcsClient over the `ws` package) against the same process on a bare WebSocket (`ws`, its
 * browser-style `onmessage`), both fed the same group messages by the real server, in the same
 * run, alternating, repeated. A third receiver, bare plus JSON.parse, shows what any
 * application pays anyway. Target: the SDK adds at most 5 µs per message over the bare socket.
 *
 *   npm run bench:client [-- --messages 30000 --runs 7 --rate 30000]
 *
 * Each receiver is a child process pinned to CPU 1 (the server to CPU 0) when taskset works;
 * it measures its own process.cpuUsage() from its first message to its last. Prints JSON:
 * per mode the per-message CPU (µs) of every run, median, min, max; the SDK's added cost as
 * the median of the per-run differences, and pass (≤ 5 µs).
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import { OcsClient } from '../../src/client/index.js';
import { SERVER_MAIN, startServer } from '../lib/server-process.js';
import { harnessConfig, writeConfigFile } from '../lib/server-config.js';
import { GENERATOR_CPU, SERVER_CPU, serverPinPrefix, tasksetAvailable } from './lib/pinning.js';
import { toolArgs } from '../lib/cli.js';

const MODES = ['bare', 'bare+parse', 'sdk'] as const;
type Mode = (typeof MODES)[number];
const GROUP = 'bench';
const TARGET_US = 5;

interface RunResult {
  mode: Mode;
  received: number;
  cpuUsPerMessage: number;
}

// ---- the receiver (a child process) --------------------------------------------------------

async function receive(mode: Mode, port: number, count: number): Promise<void> {
  const url = `ws://127.0.0.1:${port}/ws`;
  let received = 0;
  let start: NodeJS.CpuUsage | null = null;
  let done: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (done = resolve));
  let sink = 0;
  const onMessage = (parse: boolean, data: unknown): void => {
    if (start === null) start = process.cpuUsage();
    if (parse) sink += (JSON.parse(data as string) as { op: string }).op.length;
    if (++received === count) done();
  };
  if (mode === 'sdk') {
    const client = new OcsClient({ url, user: `rx-${process.pid}`, WebSocket, heartbeatMs: 0 });
    client.on('message', (msg) => {
      if (start === null) start = process.cpuUsage();
      sink += msg.id.length;
      if (++received === count) done();
    });
    await client.connect();
    await client.join(GROUP);
  } else {
    const ws = new WebSocket(`${url}?user=rx-${process.pid}`);
    let welcomed: () => void = () => undefined;
    const welcome = new Promise<void>((resolve) => (welcomed = resolve));
    ws.onmessage = (event) => {
      const text = event.data as string;
      if (text.startsWith('{"op":"msg"')) return onMessage(mode === 'bare+parse', text);
      if (text.startsWith('{"op":"welcome"')) ws.send(JSON.stringify({ op: 'join', group: GROUP, ref: 'j' }));
      else if (text.startsWith('{"op":"joined"')) welcomed();
    };
    await welcome;
  }
  process.stdout.write('ready\n');
  const timeout = setTimeout(done, 60_000);
  await finished;
  clearTimeout(timeout);
  const cpu = process.cpuUsage(start ?? undefined);
  const result: RunResult = { mode, received, cpuUsPerMessage: (cpu.user + cpu.system) / Math.max(1, received - 1) };
  process.stdout.write(JSON.stringify({ result, sink }) + '\n');
  process.exit(0);
}

// ---- the driver ------------------------------------------------------------------------------

function spawnReceiver(mode: Mode, port: number, count: number): { ready: Promise<void>; result: Promise<RunResult> } {
  const argv = [process.execPath, process.argv[1]!, '--receive', mode, '--port', String(port), '--messages', String(count)];
  const child = spawn(tasksetAvailable() ? 'taskset' : argv[0]!, tasksetAvailable() ? ['-c', GENERATOR_CPU, ...argv] : argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  let ready: () => void = () => undefined;
  const readyP = new Promise<void>((resolve) => (ready = resolve));
  const result = new Promise<RunResult>((resolve, reject) => {
    lines.on('line', (line) => {
      if (line === 'ready') ready();
      else resolve((JSON.parse(line) as { result: RunResult }).result);
    });
    child.once('exit', (code) => reject(new Error(`receiver ${mode} exited ${code}`)));
  });
  return { ready: readyP, result };
}

/** Publishes `count` pubs at `rate` per second from one raw connection. */
async function publish(port: number, count: number, rate: number): Promise<void> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?user=bench-tx`);
  await new Promise<void>((resolve, reject) => {
    ws.once('message', () => resolve());
    ws.once('error', reject);
  });
  ws.send(JSON.stringify({ op: 'join', group: GROUP }));
  const started = Date.now();
  for (let sent = 0; sent < count; ) {
    const due = Math.min(count, Math.floor(((Date.now() - started) / 1000) * rate) + 1);
    for (; sent < due; sent++) ws.send(`{"op":"pub","group":"${GROUP}","data":{"text":"hello, this is a chat message","n":${sent}}}`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  ws.close();
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const round = (x: number): number => Math.round(x * 1000) / 1000;

async function main(): Promise<void> {
  const values = toolArgs({
    command: 'npm run bench:client --',
    about: 'CPU per received group message in a receiving process: a bare WebSocket, the same with JSON.parse, and the SDK, in alternating runs. JSON on stdout.',
    options: {
      messages: { type: 'int', default: 30_000, min: 1, help: 'messages published in each run' },
      runs: { type: 'int', default: 7, min: 1, help: 'runs of each receiver, alternating' },
      rate: { type: 'number', default: 30_000, min: 1, help: 'messages published a second' },
      receive: { type: 'string', value: 'MODE', help: 'internal: this process is the receiver of that mode' },
      port: { type: 'int', default: 0, help: "internal: the receiver's server port" },
    },
  });
  const count = values.messages;
  if (values.receive !== undefined) return receive(values.receive as Mode, values.port, count);
  const { runs, rate } = values;
  const config = writeConfigFile(harnessConfig({ websocket: { server: { shards: 1, max_backpressure: 64 * 1024 * 1024 } } }));
  const server = await startServer([...serverPinPrefix(), process.execPath, SERVER_MAIN, '--config', config.file]);
  const perMode = new Map<Mode, RunResult[]>(MODES.map((m) => [m, []]));
  try {
    for (let run = 0; run < runs; run++) {
      for (const mode of MODES) {
        const receiver = spawnReceiver(mode, server.port, count);
        await receiver.ready;
        await publish(server.port, count, rate);
        const result = await receiver.result;
        perMode.get(mode)!.push(result);
        process.stderr.write(`run ${run + 1}/${runs} ${mode}: ${result.cpuUsPerMessage.toFixed(2)} µs/message (${result.received} received)\n`);
      }
    }
  } finally {
    await server.stop();
    config.remove();
  }
  const summary = Object.fromEntries(
    MODES.map((mode) => {
      const us = perMode.get(mode)!.map((r) => r.cpuUsPerMessage);
      return [mode, { cpuUsPerMessage: us.map(round), median: round(median(us)), min: round(Math.min(...us)), max: round(Math.max(...us)), received: perMode.get(mode)!.map((r) => r.received) }];
    }),
  );
  const bare = perMode.get('bare')!;
  const added = perMode.get('sdk')!.map((r, i) => r.cpuUsPerMessage - bare[i]!.cpuUsPerMessage);
  const addedMedian = median(added);
  console.log(
    JSON.stringify(
      {
        benchmark: 'client-overhead',
        node: process.version,
        config: { messages: count, runs, rate, payload: 'group msg, ~130 bytes of JSON' },
        environment: { pinning: tasksetAvailable() ? { taskset: true, serverCpu: SERVER_CPU, receiverCpu: GENERATOR_CPU } : { taskset: false, note: 'taskset is missing: server and receivers ran unpinned' } },
        results: summary,
        sdkAddedUsPerMessage: { perRun: added.map(round), median: round(addedMedian), min: round(Math.min(...added)), max: round(Math.max(...added)) },
        target: { maxAddedUs: TARGET_US },
        pass: addedMedian <= TARGET_US,
      },
      null,
      2,
    ),
  );
}

void main();

/**
 * `npm run bench:send`: durable `send` end to end, once per store sync mode.
 *
 * For each of store.sync = full, overlapping, none it starts the real server as a child
 * process (`node dist/src/main.js`, two shards, a fresh data dir), connects BENCH_SENDERS
 * senders and BENCH_RECIPIENTS recipients with the raw-socket client (tools/wsclient), offers
 * BENCH_RATE sends per second for BENCH_SECONDS (after a 2 s warm-up), and the recipients
 * `ack` every message. Prints one JSON document: per mode the rates of messages stored (sender
 * got `ack`), delivered and acknowledged, and P50/P99/max latency from `send` to the sender's
 * `ack` (stored) and to delivery. Both ends run in this process, so one clock times them.
 * Also the server's CPU (process CPU from /proc, all threads) over the measured window (per
 * stored message, and per second), once it was ready (its start-up), and from start to stop.
 *
 * BENCH_REPEATS > 1 runs every mode that many times and adds `summary`: per server and mode the
 * median, lowest and highest of each figure. BENCH_BASELINE_MAIN (another build's
 * dist/src/main.js, e.g. an older commit's) runs that server too, alternating with this one in
 * each repetition (the order rotates), so a before/after comparison shares the machine's load.
 *
 * Env: BENCH_RATE (20000), BENCH_SECONDS (6), BENCH_SENDERS (8), BENCH_RECIPIENTS (8),
 * BENCH_MODES (full,overlapping,none), BENCH_REPEATS (1), BENCH_BASELINE_MAIN (none),
 * BENCH_WARMUP (seconds of load before the window, 2), BENCH_MAIN (the server measured as `this`: default this checkout's dist/src/main.js; another build's
 * to compare two older builds), BENCH_CONFIG (a JSON config tree merged into `this` server's config, not the baseline's:
 * e.g. '{"websocket":{"monitoring":{"enable_metrics_collection":false}}}').
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { processCpuSeconds } from '../lib/proc.js';
import { deepMerge, harnessConfig, writeConfigFile, type ConfigTree } from '../lib/server-config.js';
import { SERVER_MAIN, startServer, type ServerProcess } from '../lib/server-process.js';
import { connectWs, type WsClient } from '../wsclient/client.js';
import { rotation } from './lib/repetitions.js';
import { summarizeSendRuns, type SendRun } from './lib/send-summary.js';
import { toolArgs } from '../lib/cli.js';

// Its settings are environment variables (the figures in the README were taken so); this answers --help and refuses stray arguments.
toolArgs({
  command: 'npm run bench:send --',
  about: 'Durable `send` end to end, once per store sync mode (full, overlapping, none): messages stored, delivered and acknowledged a second, latency to the sender\'s `ack` and to delivery, and the server\'s CPU. JSON on stdout.',
  options: {},
  env: {
    BENCH_RATE: 'sends offered a second (default 20000; 0 measures the server idle with its connections open)',
    BENCH_SECONDS: 'measured seconds (default 6)',
    BENCH_SENDERS: 'sending connections (default 8)',
    BENCH_RECIPIENTS: 'receiving connections, which ack every message (default 8)',
    BENCH_MODES: 'store.sync modes measured (default full,overlapping,none)',
    BENCH_REPEATS: 'runs of every mode; above 1 adds the summary (default 1)',
    BENCH_BASELINE_MAIN: "another build's dist/src/main.js, run alternating with this one",
    BENCH_MAIN: "the build measured as this (default this checkout's dist/src/main.js)",
    BENCH_WARMUP: 'seconds of load before the window (default 2)',
    BENCH_CONFIG: "a JSON config tree merged into this server's config",
    BENCH_SERVER_NODE_ARGS: 'more node options for the servers, space-separated',
  },
});

const RATE = Number(process.env.BENCH_RATE ?? 20_000);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 6);
const SENDERS = Number(process.env.BENCH_SENDERS ?? 8);
const RECIPIENTS = Number(process.env.BENCH_RECIPIENTS ?? 8);
const MODES = (process.env.BENCH_MODES ?? 'full,overlapping,none').split(',') as Array<'full' | 'overlapping' | 'none'>;
const REPEATS = Math.max(1, Number(process.env.BENCH_REPEATS ?? 1));
const BASELINE_MAIN = process.env.BENCH_BASELINE_MAIN ?? '';
const THIS_MAIN = process.env.BENCH_MAIN ?? SERVER_MAIN;
const EXTRA_CONFIG = JSON.parse(process.env.BENCH_CONFIG ?? '{}') as ConfigTree;
const WARMUP_S = Number(process.env.BENCH_WARMUP ?? 2);
const TICK_MS = 2;

/** The real server (`main`: its dist/src/main.js) with two shards and a fresh store in `sync` mode; its stderr goes to ours. */
async function startRealServer(main: string, sync: string, dataDir: string): Promise<ServerProcess> {
  const tree = harnessConfig({
    websocket: {
      server: { shards: 2, max_backpressure: 16 * 1024 * 1024 },
      delivery: { ack_timeout: 30 },
    },
    store: { data_dir: dataDir, sync },
    logging: { level: 'info' },
  });
  // A build from before the per-address limits (issue 8) refuses their keys as unknown; it has no such limits to turn off.
  if (main !== SERVER_MAIN) (tree.websocket as { limits: Record<string, number> }).limits = { messages_per_second: 0 };
  const config = writeConfigFile(main === THIS_MAIN ? deepMerge(tree, EXTRA_CONFIG) : tree);
  // BENCH_SERVER_NODE_ARGS: extra node flags for the server, e.g. --cpu-prof to profile it.
  const nodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  try {
    return await startServer([process.execPath, ...nodeArgs, main, '--config', config.file], { stderr: 'inherit' });
  } finally {
    config.remove(); // the server reads its config once, at start-up
  }
}

function open(port: number, user: string, onMessage: (payload: Buffer) => void): Promise<WsClient> {
  return new Promise((resolve, reject) => {
    const ws = connectWs({
      host: '127.0.0.1',
      port,
      path: `/ws?user=${user}`,
      onOpen: () => resolve(ws),
      onMessage,
      onError: reject,
    });
  });
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!);
}

const round = (x: number): number => Math.round(x * 1000) / 1000;

async function runMode(main: string, sync: 'full' | 'overlapping' | 'none'): Promise<SendRun> {
  const dataDir = mkdtempSync(join(tmpdir(), 'ocs-bench-data-'));
  const server = await startRealServer(main, sync, dataDir);
  const cpuAtReady = processCpuSeconds(server.pid) ?? NaN;
  let measuring = false;
  let stored = 0;
  let delivered = 0;
  let errors = 0;
  const storeLat: number[] = [];
  const deliverLat: number[] = [];
  const sentAt = new Map<string, number>();
  const recipients: WsClient[] = [];
  for (let r = 0; r < RECIPIENTS; r++) {
    const self: { ws: WsClient | null } = { ws: null };
    const handle = (text: string): void => {
      const frame = JSON.parse(text) as { op: string; id?: string; data?: { t: number }; msgs?: Array<{ id: string; data: { t: number } }> };
      const msgs = frame.op === 'batch' ? frame.msgs! : frame.op === 'msg' ? [frame as { id: string; data: { t: number } }] : [];
      const now = performance.now();
      const acks: string[] = [];
      for (const m of msgs) {
        acks.push(`{"op":"ack","id":"${m.id}"}`);
        if (measuring && m.data.t >= 0) {
          delivered++;
          deliverLat.push(now - m.data.t);
        }
      }
      if (acks.length > 0) self.ws!.sendMany(acks);
    };
    self.ws = await open(server.port, `rcpt${r}`, (payload) => handle(payload.toString()));
    recipients.push(self.ws);
  }
  const senders: WsClient[] = [];
  for (let s = 0; s < SENDERS; s++) {
    senders.push(
      await open(server.port, `sender${s}`, (payload) => {
        const frame = JSON.parse(payload.toString()) as { op: string; ref?: string };
        if (frame.op === 'ack' && frame.ref !== undefined) {
          const t = sentAt.get(frame.ref);
          sentAt.delete(frame.ref);
          if (t !== undefined && measuring) {
            stored++;
            storeLat.push(performance.now() - t);
          }
        } else if (frame.op === 'err') errors++;
      }),
    );
  }
  // Open loop: every TICK_MS, send the share of RATE due by now, spread over the senders.
  let seq = 0;
  let offered = 0;
  const start = performance.now();
  let measureStart = 0;
  let cpuAtStart = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now();
      const elapsed = (now - start) / 1000;
      if (!measuring && elapsed >= WARMUP_S) {
        measuring = true;
        measureStart = now;
        cpuAtStart = processCpuSeconds(server.pid) ?? NaN;
      }
      if (elapsed >= WARMUP_S + SECONDS) {
        clearInterval(timer);
        resolve();
        return;
      }
      const due = Math.floor(elapsed * RATE) - seq;
      const batches: string[][] = senders.map(() => []);
      for (let i = 0; i < due; i++) {
        const n = seq++;
        const ref = n.toString(36);
        sentAt.set(ref, now);
        batches[n % SENDERS]!.push(`{"op":"send","to":"rcpt${n % RECIPIENTS}","data":{"n":${n},"t":${now}},"ref":"${ref}"}`);
        if (measuring) offered++;
      }
      batches.forEach((texts, s) => texts.length > 0 && senders[s]!.sendMany(texts));
    }, TICK_MS);
  });
  const seconds = (performance.now() - measureStart) / 1000;
  measuring = false;
  const windowCpuS = (processCpuSeconds(server.pid) ?? NaN) - cpuAtStart;
  // Let the tail drain so that the last second's latencies are not cut short.
  await new Promise((resolve) => setTimeout(resolve, 500));
  const totalCpuS = processCpuSeconds(server.pid) ?? NaN;
  for (const ws of [...senders, ...recipients]) ws.close();
  await server.stop();
  rmSync(dataDir, { recursive: true, force: true });
  const s = Float64Array.from(storeLat).sort();
  const d = Float64Array.from(deliverLat).sort();
  return {
    server: main === THIS_MAIN ? 'this' : 'baseline',
    sync,
    offered_per_s: Math.round(offered / seconds),
    stored_per_s: Math.round(stored / seconds),
    delivered_and_acked_per_s: Math.round(delivered / seconds),
    send_to_stored_ms: { p50: percentile(s, 50), p99: percentile(s, 99), max: percentile(s, 100) },
    send_to_delivery_ms: { p50: percentile(d, 50), p99: percentile(d, 99), max: percentile(d, 100) },
    errors,
    unanswered_sends: sentAt.size,
    // /proc counts in clock ticks (10 ms): over a 6 s window that is well under 1%.
    server_cpu_s: round(windowCpuS),
    server_cpu_us_per_stored: stored > 0 ? Math.round(((windowCpuS * 1e6) / stored) * 10) / 10 : null,
    // Of a core, over the window: with BENCH_RATE=0, what the server costs with its connections open and idle.
    server_cpu_ms_per_s: Math.round((windowCpuS * 1000) / seconds),
    server_cpu_at_ready_s: round(cpuAtReady),
    server_cpu_total_s: round(totalCpuS),
  };
}

const mains = BASELINE_MAIN === '' ? [THIS_MAIN] : [BASELINE_MAIN, THIS_MAIN];
const results: SendRun[] = [];
for (let rep = 0; rep < REPEATS; rep++) {
  for (const mode of MODES) {
    for (const main of rotation(mains, rep)) {
      const run = await runMode(main, mode);
      results.push(run);
      // Progress of a long series, one line per run (stdout keeps the one JSON document).
      if (REPEATS > 1) process.stderr.write(`${JSON.stringify({ rep, server: run.server, sync: mode, stored_per_s: run.stored_per_s, p50_ms: run.send_to_delivery_ms.p50, cpu_us_per_stored: run.server_cpu_us_per_stored, cpu_ms_per_s: run.server_cpu_ms_per_s, cpu_at_ready_s: run.server_cpu_at_ready_s, cpu_total_s: run.server_cpu_total_s })}\n`);
    }
  }
}
console.log(
  JSON.stringify(
    {
      bench: 'durable-send',
      note: 'stored = the sender got ack {ref,id} (committed per store.sync); delivered = the recipient got the msg (and acked it)',
      machine: { cpus: cpus().length, node: process.version },
      settings: { rate: RATE, seconds: SECONDS, senders: SENDERS, recipients: RECIPIENTS, shards: 2, repeats: REPEATS, baseline: BASELINE_MAIN || null },
      results,
      ...(REPEATS > 1 || BASELINE_MAIN !== '' ? { summary: summarizeSendRuns(results) } : {}),
    },
    null,
    2,
  ),
);

/**
 * `npm run bench:stored`: what stored messages cost the server's memory. Not a speed test.
 *
 * Starts the real server as a child process (`node dist/src/main.js`, two shards, a fresh data
 * dir, the harness config of tools/lib), connects one sender, and `send`s BENCH_MESSAGES
 * messages of BENCH_BYTES bytes each to as many distinct users, none of them online, keeping at
 * most BENCH_WINDOW sends unanswered. Prints one JSON document: the server's RSS (VmRSS, all
 * threads; with its anonymous and file-backed parts) after start-up, once every send was
 * answered, and BENCH_SETTLE_S seconds later; how many sends were acknowledged or refused (by
 * code); and `/stats` `messaging` as the server reports it.
 *
 * Env: BENCH_MESSAGES (20000), BENCH_BYTES (10240), BENCH_WINDOW (500), BENCH_SETTLE_S (5),
 * BENCH_DELIVERY: JSON merged into websocket.delivery (e.g. '{"max_stored_per_sender":20000}'),
 * BENCH_STORE: JSON merged into store.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { processRss } from '../lib/proc.js';
import { harnessConfig, writeConfigFile } from '../lib/server-config.js';
import { SERVER_MAIN, startServer } from '../lib/server-process.js';
import { connectWs, type WsClient } from '../wsclient/client.js';
import { toolArgs } from '../lib/cli.js';

// Its settings are environment variables; this answers --help and refuses stray arguments.
toolArgs({
  command: 'npm run bench:stored --',
  about: "What stored messages cost the server's memory (not a speed test): RSS after start-up, once every send to offline users was answered, and after a settle. JSON on stdout.",
  options: {},
  env: {
    BENCH_MESSAGES: 'sends, each to a distinct offline user (default 20000)',
    BENCH_BYTES: 'bytes of each message (default 10240)',
    BENCH_WINDOW: 'sends unanswered at most (default 500)',
    BENCH_SETTLE_S: 'seconds after the last answer before the last reading (default 5)',
    BENCH_DELIVERY: "JSON merged into websocket.delivery, e.g. '{\"max_stored_per_sender\":20000}'",
    BENCH_STORE: 'JSON merged into store',
  },
});

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 20_000);
const BYTES = Number(process.env.BENCH_BYTES ?? 10 * 1024);
const WINDOW = Number(process.env.BENCH_WINDOW ?? 500);
const SETTLE_S = Number(process.env.BENCH_SETTLE_S ?? 5);
const DELIVERY = JSON.parse(process.env.BENCH_DELIVERY ?? '{}') as Record<string, unknown>;
const STORE = JSON.parse(process.env.BENCH_STORE ?? '{}') as Record<string, unknown>;

const MIB = 1024 * 1024;

/** The server's resident memory in MiB: in all, anonymous (heaps, malloc), and file-backed (LMDB's map, code). */
function rssMiB(pid: number): { rss: number; anon: number; file: number } {
  const rss = processRss(pid);
  if (!rss) throw new Error(`no /proc/${pid}/status: is the server still running?`);
  return { rss: Math.round(rss.rss / MIB), anon: Math.round(rss.anon / MIB), file: Math.round(rss.file / MIB) };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const dataDir = mkdtempSync(join(tmpdir(), 'ocs-bench-data-'));
const config = writeConfigFile(
  harnessConfig({
    websocket: { server: { shards: 2 }, delivery: DELIVERY },
    store: { data_dir: dataDir, sync: 'none', ...STORE },
    logging: { level: 'info' }, // the "ready" line is info
  }),
);
const server = await startServer([process.execPath, SERVER_MAIN, '--config', config.file]).finally(() => config.remove());
try {
  const answers = { acked: 0, refused: new Map<string, number>() };
  let sent = 0;
  let answered = 0;
  let wake: (() => void) | null = null;
  const sender: WsClient = await new Promise((resolve, reject) => {
    const ws = connectWs({
      host: '127.0.0.1',
      port: server.port,
      path: '/ws?user=bench-sender',
      onOpen: () => resolve(ws),
      onError: reject,
      onMessage: (payload) => {
        const frame = JSON.parse(payload.toString()) as { op: string; code?: string; ref?: string };
        if (frame.op === 'ack' && frame.ref !== undefined) answers.acked++;
        else if (frame.op === 'err' && frame.ref !== undefined) answers.refused.set(frame.code!, (answers.refused.get(frame.code!) ?? 0) + 1);
        else return;
        answered++;
        wake?.();
      },
    });
  });
  await sleep(1000);
  const rssStart = rssMiB(server.pid);
  const body = JSON.stringify('x'.repeat(BYTES - 2)); // BYTES of JSON text
  while (answered < MESSAGES) {
    const batch: string[] = [];
    while (sent < MESSAGES && sent - answered < WINDOW) {
      batch.push(`{"op":"send","to":"offline-${sent}","data":${body},"ref":"${sent.toString(36)}"}`);
      sent++;
    }
    if (batch.length > 0) sender.sendMany(batch);
    await new Promise<void>((resolve) => (wake = resolve));
  }
  const rssAnswered = rssMiB(server.pid);
  await sleep(SETTLE_S * 1000);
  const rssSettled = rssMiB(server.pid);
  // /stats samples the broker every metrics_collection_interval (1 s): the settle wait covers it.
  const stats = (await (await fetch(`http://127.0.0.1:${server.port}/stats`)).json()) as Record<string, unknown>;
  sender.close();
  console.log(
    JSON.stringify(
      {
        bench: 'stored-memory',
        settings: { messages: MESSAGES, bytes: BYTES, window: WINDOW, delivery: DELIVERY, store: STORE },
        rss_mib: { started: rssStart, all_answered: rssAnswered, after_settle: rssSettled },
        acked: answers.acked,
        refused: Object.fromEntries(answers.refused),
        messaging: stats.messaging,
      },
      null,
      2,
    ),
  );
} finally {
  await server.stop();
  rmSync(dataDir, { recursive: true, force: true });
}

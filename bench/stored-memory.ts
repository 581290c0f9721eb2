/**
 * `npm run bench:stored`: what stored messages cost the server's memory. Not a speed test.
 *
 * Starts the real server as a child process (`node dist/src/main.js`, two shards, a fresh data
 * dir), connects one sender, and `send`s BENCH_MESSAGES messages of BENCH_BYTES bytes each to
 * as many distinct users, none of them online, keeping at most BENCH_WINDOW sends unanswered.
 * Prints one JSON document: the server's RSS (VmRSS, all threads; with its anonymous and
 * file-backed parts) after start-up, once every send was answered, and BENCH_SETTLE_S seconds later; how many sends were acknowledged or
 * refused (by code); and `/stats` `messaging` as the server reports it.
 *
 * Env: BENCH_MESSAGES (20000), BENCH_BYTES (10240), BENCH_WINDOW (500), BENCH_SETTLE_S (5),
 * BENCH_DELIVERY: JSON merged into websocket.delivery (e.g. '{"max_stored_per_sender":20000}'),
 * BENCH_STORE: JSON merged into store.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { connectWs, type WsClient } from '../src/wsclient/client.js';
import { startServer } from './lib/server-process.js';

const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 20_000);
const BYTES = Number(process.env.BENCH_BYTES ?? 10 * 1024);
const WINDOW = Number(process.env.BENCH_WINDOW ?? 500);
const SETTLE_S = Number(process.env.BENCH_SETTLE_S ?? 5);
const DELIVERY = JSON.parse(process.env.BENCH_DELIVERY ?? '{}') as Record<string, unknown>;
const STORE = JSON.parse(process.env.BENCH_STORE ?? '{}') as Record<string, unknown>;

/** The process's resident memory in MiB: in all, anonymous (heaps, malloc), and file-backed (LMDB's map, code). */
function rssMiB(pid: number): { rss: number; anon: number; file: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n');
  const field = (name: string): number => Math.round(Number(status.find((l) => l.startsWith(`${name}:`))?.match(/(\d+)/)?.[1] ?? NaN) / 1024);
  return { rss: field('VmRSS'), anon: field('RssAnon'), file: field('RssFile') };
}

function getJson(port: number, path: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString()));
      res.on('end', () => resolve(JSON.parse(text) as Record<string, unknown>));
    });
    req.once('error', reject);
    req.end();
  });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const dataDir = mkdtempSync(join(tmpdir(), 'ocs-bench-data-'));
const configFile = join(mkdtempSync(join(tmpdir(), 'ocs-bench-')), 'config.yaml');
writeFileSync(
  configFile,
  stringify({
    websocket: {
      server: { host: '127.0.0.1', port: 0, shards: 2 },
      auth: { allow_anonymous: true },
      limits: { messages_per_second: 0 },
      delivery: DELIVERY,
    },
    store: { data_dir: dataDir, sync: 'none', ...STORE },
    logging: { level: 'info' }, // the "ready" line is info
  }),
);
const server = await startServer([process.execPath, MAIN, '--config', configFile]);
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
  const stats = await getJson(server.port, '/stats');
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

/**
 * `npm run bench:soak -- [--minutes 10] [--json]`: does the server's memory stay bounded under
 * churn? Not a speed test.
 *
 * Starts the real server (`node dist/src/main.js`, 2 shards, a fresh store in /tmp, the harness
 * config of tools/lib and otherwise the defaults, plus a short `delivery.ttl` and one history
 * pattern `h.*` so that history and recovery are exercised), then for `--minutes` keeps about
 * `--live` clients connected, each for a few seconds (`--lifetime`, ±50%), half on
 * ocs.v1.json and half on ocs.v1.msgpack. Each client joins 1-3 groups out of a set whose names
 * rotate every `--group-period` seconds (groups are created and abandoned, names never come
 * back), some with presence events, some with `since` (recovery from the offset its user last
 * saw); then, about `--ops` times a second: `pub`, durable `send` (to users of a pool that
 * drifts, so that some never come back and their messages wait out `delivery.ttl`, and to users
 * who never connect at all; a tenth scheduled a few seconds ahead with `at`), `any`,
 * `presence`, `history`, `ping`, a `leave` and another `join`; it acks what it gets (a tenth of
 * the clients never ack: redeliveries). A fifth of the clients are cut off (TCP reset) instead
 * of closing. Then every client leaves and the server idles `--idle` seconds.
 *
 * Every `--sample` seconds: the process's RSS (/proc, with its anonymous and file-backed parts),
 * each thread's heap as /stats reports it (`resources.threads`: what an operator sees, garbage
 * included), each thread's live heap after a full collection (with `--heap gc`, the default:
 * through the V8 inspector, the server being started with --inspect on a free port; the server
 * itself offers no way to trigger a collection, and with its memory reducer off an idle heap
 * keeps its garbage), stored messages, connections and the kept history. Progress on stderr.
 *
 * The verdict, per series: the least-squares slope over the second half of the churn (bytes a
 * minute), the mean of the last quarter of the churn over the mean of its first quarter after
 * the warm-up (`--warmup`), and the end state (after every client left and the server idled)
 * against that first quarter and against the idle server before the churn. A leak is memory
 * that stays after everything left, or that keeps growing while the load stays the same.
 * `--snapshots DIR` also writes a heap snapshot of each thread at the end, after the last sample
 * (a snapshot grows the server's RSS by 100+ MiB, which would spoil the RSS series).
 *
 * Prints a summary on stdout, or with `--json` one JSON document (settings, samples, verdict).
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { toolArgs } from '../lib/cli.js';
import { freePort } from '../lib/free-port.js';
import { processRss } from '../lib/proc.js';
import { harnessConfig, writeConfigFile } from '../lib/server-config.js';
import { SERVER_MAIN, startServer, type ServerProcess } from '../lib/server-process.js';
import { InspectorHeap } from './lib/inspector-heap.js';
import { ChurnClients } from './lib/soak-clients.js';
import { leakIn, mib, verdictsOf, type Sample } from './lib/soak-verdict.js';

const opts = toolArgs({
  command: 'npm run bench:soak --',
  about: "Whether the server's memory stays bounded under churn: clients connecting and leaving, groups created and abandoned, pub/send/any/ack/presence/history/recovery, for minutes; RSS and each thread's heap sampled throughout and after everything left. A summary on stdout, or JSON with --json.",
  options: {
    minutes: { type: 'number', default: 10, min: 0.1, help: 'minutes of churn' },
    live: { type: 'int', default: 300, min: 1, help: 'clients connected at a time' },
    lifetime: { type: 'number', default: 5, min: 0.2, help: 'seconds a client lives, on average (each one ±50%)' },
    ops: { type: 'number', default: 1, min: 0, help: 'operations a second per client (pub, send, any, presence, history, ping, leave/join)' },
    ttl: { type: 'number', default: 15, min: 1, help: "the server's delivery.ttl, seconds: how long a message waits for a user who never comes back" },
    'group-period': { type: 'number', default: 20, min: 1, help: 'seconds between two generations of group names' },
    users: { type: 'int', default: 400, min: 10, help: 'users in the pool clients connect as' },
    'user-drift': { type: 'number', default: 2, min: 0, help: 'users a second that leave the pool for good (and new ones that enter it)' },
    warmup: { type: 'number', default: 60, min: 0, help: 'seconds of churn before the first quarter the verdict compares against' },
    idle: { type: 'number', default: 45, min: 0, help: "seconds the server idles after every client left, before the end state (the default lets the store drain: an unacknowledged message waits delivery.ack_timeout (10 s), then --ttl from its last delivery)" },
    sample: { type: 'number', default: 10, min: 1, help: 'seconds between samples' },
    heap: { type: 'choice', known: ['gc', 'stats'] as const, default: 'gc', help: "gc: also each thread's live heap after a full collection, through the V8 inspector (--inspect); stats: /stats figures only" },
    snapshots: { type: 'string', value: 'DIR', help: "write a heap snapshot of each thread into DIR at the end, after the last sample (taking one grows the server's RSS by 100+ MiB, so never during the run; needs --heap gc)" },
    json: { type: 'boolean', help: 'print one JSON document (settings, samples, verdict) instead of the summary' },
  },
});

const log = (line: string): void => void process.stderr.write(`${line}\n`);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// The server

const HISTORY_SIZE = 50;

const dataDir = mkdtempSync(join(tmpdir(), 'ocs-soak-data-'));
const inspectPort = opts.heap === 'gc' ? await freePort() : null;
const config = writeConfigFile(
  harnessConfig({
    websocket: {
      server: { shards: 2 },
      delivery: { ttl: opts.ttl },
      history: [{ pattern: 'h.*', size: HISTORY_SIZE, ttl: Math.max(1, Math.round(opts.ttl * 2)) }],
    },
    store: { data_dir: dataDir },
    logging: { level: 'info' }, // the "ready" line is info
  }),
);
const argv = [process.execPath, ...(inspectPort !== null ? [`--inspect=127.0.0.1:${inspectPort}`] : []), SERVER_MAIN, '--config', config.file];
const server: ServerProcess = await startServer(argv).finally(() => config.remove());
// Interrupted (Ctrl-C): stop the server and remove the store, as the end of a run does.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping the server`);
    void server.stop().finally(() => {
      rmSync(dataDir, { recursive: true, force: true });
      process.exit(130);
    });
  });
}
const inspector = inspectPort !== null ? await InspectorHeap.connect(inspectPort) : null;
const base = `127.0.0.1:${server.port}`;

const clients = new ChurnClients({
  base,
  live: opts.live,
  lifetime: opts.lifetime,
  ops: opts.ops,
  users: opts.users,
  userDrift: opts['user-drift'],
  groupPeriod: opts['group-period'],
});

// ---------------------------------------------------------------------------------------------
// Samples

const samples: Sample[] = [];
let churnStart = 0;

async function stats(): Promise<Record<string, any>> {
  const res = await fetch(`http://${base}/stats`, { signal: AbortSignal.timeout(10_000) });
  return (await res.json()) as Record<string, any>;
}

async function takeSample(phase: Sample['phase']): Promise<Sample> {
  const t0 = performance.now();
  const s = await stats();
  const rss = processRss(server.pid);
  const liveHeaps = inspector ? await inspector.liveHeaps() : null;
  const sample: Sample = {
    t: Math.round((performance.now() - churnStart) / 100) / 10,
    phase,
    rssBytes: rss?.rss ?? NaN,
    rssAnonBytes: rss?.anon ?? NaN,
    rssFileBytes: rss?.file ?? NaN,
    statsHeaps: ((s.resources?.threads ?? []) as any[]).map((t) => ({ thread: String(t.thread), heapUsedBytes: t.heap_used_bytes, heapTotalBytes: t.heap_total_bytes })),
    liveHeaps,
    connections: s.connections,
    stored: s.messaging?.stored,
    storedBytes: s.messaging?.stored_bytes,
    queue: s.queue,
    history: s.history,
    deadLettered: s.messaging?.dead_lettered,
    expired: s.messaging?.expired,
    clients: { live: clients.liveCount, opened: clients.counts.opened },
  };
  samples.push(sample);
  const heaps = (liveHeaps ?? sample.statsHeaps.map((h) => ({ thread: h.thread, usedBytes: h.heapUsedBytes, externalBytes: null }))).map((h) => `${h.thread} ${mib(h.usedBytes)}${h.externalBytes !== null ? ` (ext ${mib(h.externalBytes)})` : ''}`).join(', ');
  const hist = s.history as { groups?: number; messages?: number } | null;
  log(
    `[${phase} ${sample.t}s] rss ${mib(sample.rssBytes)} MiB (anon ${mib(sample.rssAnonBytes)}), ${liveHeaps ? 'live' : 'stats'} heap MiB: ${heaps}; ` +
      `conns ${sample.connections}, stored ${sample.stored}, dead ${sample.deadLettered}, history groups ${hist?.groups ?? '-'} msgs ${hist?.messages ?? '-'}; ` +
      `opened ${clients.counts.opened}, frames out ${clients.counts.framesOut} in ${clients.counts.framesIn}, errs ${JSON.stringify(Object.fromEntries(clients.counts.errs))} (sampled in ${Math.round(performance.now() - t0)} ms)`,
  );
  return sample;
}

// ---------------------------------------------------------------------------------------------
// The run

const churnS = opts.minutes * 60;
const snapshotFiles: string[] = [];
let exitCode = 0;
try {
  if (opts.snapshots && !inspector) throw new Error('--snapshots needs --heap gc');
  if (opts.snapshots) mkdirSync(opts.snapshots, { recursive: true });
  log(`server pid ${server.pid} on ${base}${inspectPort ? `, inspector on 127.0.0.1:${inspectPort}` : ''}, store ${dataDir}; ${opts.minutes} min of churn, ${opts.live} clients live, ${opts.lifetime} s each`);
  await sleep(3000);
  churnStart = performance.now();
  await takeSample('before');

  clients.start(churnStart);
  let nextSampleAt = opts.sample;
  while (true) {
    const t = (performance.now() - churnStart) / 1000;
    if (t >= churnS) break;
    await sleep(Math.min(nextSampleAt, churnS) * 1000 - (performance.now() - churnStart));
    if ((performance.now() - churnStart) / 1000 >= churnS) break;
    await takeSample('churn');
    nextSampleAt += opts.sample;
  }
  await takeSample('churn');
  clients.stop(true);
  const leftBy = performance.now() + 10_000;
  while (clients.liveCount > 0 && performance.now() < leftBy) await sleep(100);
  log(`every client left (${clients.liveCount} still closing); idling ${opts.idle} s`);
  const idleUntil = performance.now() + opts.idle * 1000;
  while (performance.now() < idleUntil) {
    await sleep(Math.min(opts.sample * 1000, idleUntil - performance.now()));
    await takeSample('after');
  }
  if (opts.snapshots) {
    const files = await inspector!.snapshots(join(opts.snapshots, `end-${Date.now()}`));
    snapshotFiles.push(...files);
    log(`snapshots: ${files.join(' ')}`);
  }

  const verdict = verdictsOf(samples, churnS, opts.warmup);
  const last = samples.at(-1)!;
  const result = {
    benchmark: 'soak',
    node: process.version,
    settings: { ...opts, shards: 2, historyPattern: { pattern: 'h.*', size: HISTORY_SIZE } },
    clients: clients.summary(),
    endState: { connections: last.connections, stored: last.stored, storedBytes: last.storedBytes, queue: last.queue, history: last.history, deadLettered: last.deadLettered, expired: last.expired },
    serverWarnings: server.warnings,
    snapshots: snapshotFiles,
    verdict,
    leak: leakIn(verdict),
    samples,
  };
  if (opts.json) console.log(JSON.stringify(result, null, 2));
  else {
    const rows = verdict.map(
      (v) =>
        `${String(v.series).padEnd(28)} before ${v.beforeMiB} | q1 ${v.firstQuarterMiB} | q4 ${v.lastQuarterMiB} | end ${v.endMiB} MiB | max ${v.maxMiB} | slope(2nd half) ${v.secondHalfSlopeBytesPerMin === null ? '-' : mib(v.secondHalfSlopeBytesPerMin)} MiB/min | q4/q1 ${v.lastOverFirstQuarter} | end/q1 ${v.endOverFirstQuarter}: ${v.judged}`,
    );
    console.log(
      [
        `soak: ${opts.minutes} min, ${clients.counts.opened} connections opened, ${clients.counts.framesOut} frames out, ${clients.counts.framesIn} in; errs ${JSON.stringify(result.clients.errs)}; server closes ${JSON.stringify(result.clients.closedByServer)}`,
        `end state: ${JSON.stringify(result.endState)}`,
        ...rows,
        `leak: ${result.leak ? 'YES (see above)' : 'none found'}`,
      ].join('\n'),
    );
  }
} catch (err) {
  log(`soak failed: ${(err as Error).stack ?? String(err)}`);
  exitCode = 1;
} finally {
  clients.stop(false);
  inspector?.close();
  await server.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
process.exit(exitCode);

/**
 * What an idle server costs: CPU used by the process (all threads) over a quiet window after
 * a warm-up, and how often each of its threads woke, for the single-thread uWS baseline and
 * the real server with 1 and 2 shards, in the same run. Nothing in the server should poll, so
 * all should be near zero.
 *
 *   npm run bench:idle [-- --warmup 20 --window 20 --targets baseline,shards1,shards2]
 *
 * Prints JSON: CPU seconds and share of one core over the window, and wake-ups a second
 * (voluntary context switches, /proc/PID/task/TID/status) of the main thread (the primary)
 * and of every other thread with any, per target. Node names no thread, so a shard is not
 * told apart from V8's and libuv's helpers: it is the last one started (highest tid).
 */
import { parseArgs } from 'node:util';
import { prepareTarget, TARGET_NAMES, type TargetName } from './lib/broadcast-targets.js';
import { cpuUsBetween, processTree, snapshotProcesses, threadWakeups } from '../lib/proc.js';
import { startServer } from '../lib/server-process.js';

const sleep = (s: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, s * 1000));

async function measure(name: TargetName, warmupS: number, windowS: number): Promise<Record<string, unknown>> {
  const target = prepareTarget(name, 2000);
  const server = await startServer(target.argv);
  try {
    await sleep(warmupS);
    const before = snapshotProcesses();
    const wokeBefore = threadWakeups(server.pid);
    await sleep(windowS);
    const after = snapshotProcesses();
    const wokeAfter = threadWakeups(server.pid);
    const cpuUs = cpuUsBetween(before, after, processTree(after, server.pid));
    const perS = (tid: number): number => Math.round((((wokeAfter.get(tid) ?? 0) - (wokeBefore.get(tid) ?? 0)) / windowS) * 10) / 10;
    const threads = [...wokeAfter.keys()].sort((a, b) => a - b).filter((tid) => tid !== server.pid && perS(tid) > 0);
    const wakeupsPerS = { primary: perS(server.pid), otherThreads: threads.map((tid) => ({ tid, perS: perS(tid) })) };
    process.stderr.write(`${name}: ${(cpuUs / 1e6).toFixed(3)} s CPU over ${windowS} s, main thread ${wakeupsPerS.primary} wake-ups/s, others ${threads.map(perS).join(' ')}\n`);
    return { target: name, shards: target.shards, windowS, cpuSeconds: cpuUs / 1e6, coreShare: cpuUs / 1e6 / windowS, wakeupsPerS };
  } finally {
    await server.stop();
    target.cleanup();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { warmup: { type: 'string', default: '20' }, window: { type: 'string', default: '20' }, targets: { type: 'string', default: 'baseline,shards1,shards2' } },
  });
  const warmupS = Number(values.warmup);
  const windowS = Number(values.window);
  const targets = values.targets.split(',');
  for (const t of targets) if (!(TARGET_NAMES as readonly string[]).includes(t)) throw new Error(`--targets: unknown target ${t} (known: ${TARGET_NAMES.join(', ')})`);
  const results = [];
  for (const name of targets as TargetName[]) results.push(await measure(name, warmupS, windowS));
  console.log(JSON.stringify({ benchmark: 'idle', node: process.version, warmupS, results }, null, 2));
}

void main();

/**
 * What an idle server costs: CPU used by the process (all threads) over a quiet window after
 * a warm-up, for the single-thread uWS baseline and the real server with 2 shards, in the
 * same run. Nothing in the server should poll, so both should be near zero.
 *
 *   npm run bench:idle [-- --warmup 20 --window 20]
 *
 * Prints JSON: CPU seconds and share of one core over the window, per target.
 */
import { parseArgs } from 'node:util';
import { prepareTarget, type TargetName } from './lib/broadcast-targets.js';
import { cpuUsBetween, processTree, snapshotProcesses } from '../lib/proc.js';
import { startServer } from '../lib/server-process.js';

const sleep = (s: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, s * 1000));

async function measure(name: TargetName, warmupS: number, windowS: number): Promise<Record<string, unknown>> {
  const target = prepareTarget(name, 2000);
  const server = await startServer(target.argv);
  try {
    await sleep(warmupS);
    const before = snapshotProcesses();
    await sleep(windowS);
    const after = snapshotProcesses();
    const cpuUs = cpuUsBetween(before, after, processTree(after, server.pid));
    process.stderr.write(`${name}: ${(cpuUs / 1e6).toFixed(3)} s CPU over ${windowS} s\n`);
    return { target: name, shards: target.shards, windowS, cpuSeconds: cpuUs / 1e6, coreShare: cpuUs / 1e6 / windowS };
  } finally {
    await server.stop();
    target.cleanup();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { warmup: { type: 'string', default: '20' }, window: { type: 'string', default: '20' } } });
  const warmupS = Number(values.warmup);
  const windowS = Number(values.window);
  const results = [];
  for (const name of ['baseline', 'shards2'] as const) results.push(await measure(name, warmupS, windowS));
  console.log(JSON.stringify({ benchmark: 'idle', node: process.version, warmupS, results }, null, 2));
}

void main();

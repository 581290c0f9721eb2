/**
 * What an idle server costs: CPU used by the process (all threads, and by thread) over a quiet
 * window after a warm-up, and how often each of its threads woke, for the single-thread uWS
 * baseline and the real server with 1 and 2 shards, in the same run. With no connections
 * nothing in the server should poll, so all should be near zero; with `--connections N` each
 * target first gets N clients joined to `--groups` groups (as bench:broadcast's, on their
 * group's shard for a by-shard target) that then stay quiet: what its pings, its sweep of the
 * connections and its metrics cost per second.
 *
 *   npm run bench:idle [-- --warmup 20 --window 20 --targets baseline,shards1,shards2
 *     --connections 0 --groups 20]
 *
 * Prints JSON: CPU seconds and share of one core over the window, the same by thread (`byThread`:
 * the main thread, V8's platform threads, the others busiest first, ms a second), and wake-ups a
 * second (voluntary context switches, /proc/PID/task/TID/status) of the main thread (the
 * primary) and of every other thread with any, per target. Node names no thread, so a shard is
 * not told apart from libuv's helpers: it is the last one started (highest tid).
 */
import { prepareTarget, TARGET_NAMES, type TargetName } from './lib/broadcast-targets.js';
import { LoadedServer } from './lib/loaded-server.js';
import { splitThreads } from './lib/window-cpu.js';
import { round } from './lib/broadcast-load-types.js';
import { cpuUsBetween, processTree, snapshotProcesses, threadCpuUs, threadWakeups } from '../lib/proc.js';
import { startServer } from '../lib/server-process.js';
import { toolArgs } from '../lib/cli.js';

const sleep = (s: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, s * 1000));

interface Shape {
  warmupS: number;
  windowS: number;
  connections: number;
  groups: number;
}

/** The target's server, started bare or with its connections joined; and how to stop it. */
async function startIdle(name: TargetName, shape: Shape): Promise<{ pid: number; shards: number; stop(): Promise<void> }> {
  if (shape.connections > 0) {
    const loaded = await LoadedServer.start(name, shape);
    return { pid: loaded.server.pid, shards: loaded.shards, stop: () => loaded.stop() };
  }
  const target = prepareTarget(name, 2000);
  const server = await startServer(target.argv).catch((err: unknown) => {
    target.cleanup();
    throw err;
  });
  return {
    pid: server.pid,
    shards: target.shards,
    stop: async () => {
      await server.stop();
      target.cleanup();
    },
  };
}

async function measure(name: TargetName, shape: Shape): Promise<Record<string, unknown>> {
  const { warmupS, windowS } = shape;
  const server = await startIdle(name, shape);
  try {
    await sleep(warmupS);
    const before = snapshotProcesses();
    const wokeBefore = threadWakeups(server.pid);
    const cpuBefore = threadCpuUs(server.pid);
    await sleep(windowS);
    const after = snapshotProcesses();
    const wokeAfter = threadWakeups(server.pid);
    const split = splitThreads(server.pid, cpuBefore, threadCpuUs(server.pid));
    const cpuUs = cpuUsBetween(before, after, processTree(after, server.pid));
    const msPerS = (us: number): number => round(us / 1000 / windowS, 2);
    const byThread = { mainMsPerS: msPerS(split.mainUs), v8PlatformMsPerS: msPerS(split.v8PlatformUs), otherMsPerS: split.otherUs.filter((us) => us > 0).map(msPerS) };
    const perS = (tid: number): number => Math.round((((wokeAfter.get(tid) ?? 0) - (wokeBefore.get(tid) ?? 0)) / windowS) * 10) / 10;
    const threads = [...wokeAfter.keys()].sort((a, b) => a - b).filter((tid) => tid !== server.pid && perS(tid) > 0);
    const wakeupsPerS = { primary: perS(server.pid), otherThreads: threads.map((tid) => ({ tid, perS: perS(tid) })) };
    process.stderr.write(
      `${name}, ${shape.connections} connections: ${(cpuUs / 1e6).toFixed(3)} s CPU over ${windowS} s (ms/s: main ${byThread.mainMsPerS}, V8 ${byThread.v8PlatformMsPerS}, others ${byThread.otherMsPerS.join(' ')}), ` +
        `main thread ${wakeupsPerS.primary} wake-ups/s, others ${threads.map(perS).join(' ')}\n`,
    );
    return { target: name, shards: server.shards, connections: shape.connections, windowS, cpuSeconds: cpuUs / 1e6, coreShare: cpuUs / 1e6 / windowS, byThread, wakeupsPerS };
  } finally {
    await server.stop();
  }
}

async function main(): Promise<void> {
  const values = toolArgs({
    command: 'npm run bench:idle --',
    about: 'What an idle server costs: CPU over a quiet window after a warm-up, by thread, and how often each thread woke, for each target in the same run. JSON on stdout.',
    options: {
      warmup: { type: 'number', default: 20, help: 'seconds before the window' },
      window: { type: 'number', default: 20, min: 0.1, help: 'seconds measured' },
      targets: { type: 'names', known: TARGET_NAMES, default: 'baseline,shards1,shards2', help: "bench:broadcast's targets" },
      connections: { type: 'int', default: 0, help: 'quiet clients joined before the warm-up (their pings, sweep and metrics)' },
      groups: { type: 'int', default: 20, min: 1, help: 'groups those clients join' },
    },
  });
  const shape: Shape = { warmupS: values.warmup, windowS: values.window, connections: values.connections, groups: values.groups };
  const results = [];
  for (const name of values.targets) results.push(await measure(name, shape));
  console.log(JSON.stringify({ benchmark: 'idle', node: process.version, warmupS: shape.warmupS, connections: shape.connections, groups: shape.groups, results }, null, 2));
}

void main();

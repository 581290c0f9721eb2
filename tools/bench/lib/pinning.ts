// CPU pinning for benchmarks: the server gets one core, the load generator the other, so
// neither steals cycles from the other and the server's CPU figures are its own.
import { spawnSync } from 'node:child_process';

export const SERVER_CPU = '0';
export const GENERATOR_CPU = '1';

/** Set in the environment of a re-executed, already pinned generator. */
const PINNED_ENV = 'OCS_BENCH_PINNED_CPU';

export interface PinningReport {
  /** Whether `taskset` exists and works here. */
  taskset: boolean;
  serverCpu: string | null;
  generatorCpu: string | null;
  note?: string;
}

let tasksetWorks: boolean | undefined;

export function tasksetAvailable(): boolean {
  if (tasksetWorks === undefined) {
    const probe = spawnSync('taskset', ['-c', SERVER_CPU, 'true'], { stdio: 'ignore' });
    tasksetWorks = probe.status === 0;
  }
  return tasksetWorks;
}

/**
 * Re-executes this script under `taskset -c GENERATOR_CPU` unless it already runs that way,
 * and exits with the child's status. Re-exec rather than `taskset -p` so that every thread
 * Node starts (V8 platform, libuv pool) inherits the affinity, not only the main thread.
 * Returns (without re-executing) when taskset is missing or we are the pinned child.
 */
export function reexecPinnedGenerator(): void {
  if (process.env[PINNED_ENV] || !tasksetAvailable()) return;
  const child = spawnSync(
    'taskset',
    // --no-memory-reducer: the generator allocates per frame at a rate V8's memory reducer takes
    // for idle, and its collections (several ms, mid-window) would be in every latency measured.
    ['-c', GENERATOR_CPU, process.execPath, '--no-memory-reducer', ...process.execArgv, ...process.argv.slice(1)],
    { stdio: 'inherit', env: { ...process.env, [PINNED_ENV]: GENERATOR_CPU } },
  );
  process.exit(child.status ?? 1);
}

export function pinningReport(): PinningReport {
  if (!tasksetAvailable()) {
    return { taskset: false, serverCpu: null, generatorCpu: null, note: 'taskset is missing: server and generator ran unpinned' };
  }
  return { taskset: true, serverCpu: SERVER_CPU, generatorCpu: process.env[PINNED_ENV] ?? null };
}

/** The argv prefix that pins a server command to SERVER_CPU, or nothing when taskset is missing. */
export function serverPinPrefix(): string[] {
  return tasksetAvailable() ? ['taskset', '-c', SERVER_CPU] : [];
}

/**
 * How many CPUs this process may use: the CPUs it may run on (its affinity, which
 * os.availableParallelism() reads) and, when its cgroup (v2) or an ancestor of it sets a quota
 * in `cpu.max`, that quota; whichever is smaller. Node 20's availableParallelism() ignores
 * the quota (libuv 1.46), so a container given 2 CPUs on a 64-core host would otherwise run 64
 * shards, each throttled by the kernel in turn.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

export interface CpuBudget {
  /** CPUs the process may run on (sched_getaffinity). */
  affinity: number;
  /** The smallest `cpu.max` quota of its cgroup and its ancestors, in CPUs; null: none set. */
  quota: number | null;
  /** What it may use: the smaller of the two, possibly fractional (1.5 CPUs of quota). */
  usable: number;
}

/** Reads a file's text, or null when it is missing or unreadable. */
export type ReadText = (path: string) => string | null;

const readText: ReadText = (path) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
};

export function cpuBudget(read: ReadText = readText, affinity: number = availableParallelism()): CpuBudget {
  const quota = cgroupQuota(read);
  return { affinity, quota, usable: quota === null ? affinity : Math.min(affinity, quota) };
}

/**
 * Shards for `shards: 0`: one per whole CPU the process may use, at least one. Rounded down:
 * a shard beyond the quota would be throttled by the kernel, in bursts that land in the tail.
 */
export function shardsFor(budget: CpuBudget): number {
  return Math.max(1, Math.floor(budget.usable));
}

/** A `cpu.max` line ("QUOTA PERIOD", or "max PERIOD" for none) in CPUs; null for none or garbage. */
export function quotaOf(cpuMax: string): number | null {
  const [quota, period] = cpuMax.trim().split(/\s+/);
  return ratio(Number(quota), Number(period));
}

/**
 * The smallest quota on the way from the process's cgroup up to the root of its hierarchy:
 * cgroup v2 (`/proc/self/cgroup` line "0::PATH", file cpu.max) and v1 (the line whose
 * controllers include cpu, files cpu.cfs_quota_us and cpu.cfs_period_us, -1 for none). Inside
 * a container's cgroup namespace PATH is "/" and the root's own files are the container's
 * limit; on a host, a systemd unit's CPUQuota= is on its own cgroup.
 */
function cgroupQuota(read: ReadText): number | null {
  let smallest: number | null = null;
  const keep = (quota: number | null): void => {
    if (quota !== null && (smallest === null || quota < smallest)) smallest = quota;
  };
  for (const line of (read('/proc/self/cgroup') ?? '').split('\n')) {
    // "ID:CONTROLLERS:PATH"; the path may hold colons itself.
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first < 0 || second < 0) continue;
    const controllers = line.slice(first + 1, second);
    const path = line.slice(second + 1);
    if (controllers === '') {
      for (const dir of ancestors('/sys/fs/cgroup', path)) keep(quotaOf(read(`${dir}/cpu.max`) ?? ''));
    } else if (controllers.split(',').includes('cpu')) {
      for (const dir of ancestors(`/sys/fs/cgroup/${controllers}`, path)) {
        keep(ratio(Number(read(`${dir}/cpu.cfs_quota_us`)), Number(read(`${dir}/cpu.cfs_period_us`))));
      }
    }
  }
  return smallest;
}

/** `root` + `path` and each of its ancestors up to `root` itself. */
function ancestors(root: string, path: string): string[] {
  const segments = path.trim().split('/').filter(Boolean);
  const dirs: string[] = [];
  for (let depth = segments.length; depth >= 0; depth--) dirs.push([root, ...segments.slice(0, depth)].join('/'));
  return dirs;
}

/** quota ÷ period in CPUs; null for no quota (max, -1) or anything unreadable. */
function ratio(quota: number, period: number): number | null {
  const cpus = quota / period;
  return Number.isFinite(cpus) && cpus > 0 ? cpus : null;
}

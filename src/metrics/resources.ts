/**
 * What the process uses of the machine, sampled by the primary each interval: CPU time (all
 * threads) as a share of the CPUs it may use, and resident memory as a share of the memory it
 * may use. "May use": for CPU the cores it may run on or its cgroup's quota, whichever is smaller
 * (src/util/cpus.ts); for memory the cgroup's limit when there is one (a container), else the host's.
 */
import { performance } from 'node:perf_hooks';
import { totalmem } from 'node:os';
import { cpuBudget } from '../util/cpus.js';

export interface ResourceSample {
  /** User + system CPU seconds since the process started. */
  cpuSeconds: number;
  /** CPU used over the last interval / (interval × cpuLimit), 0..1 (can exceed 1 briefly). */
  cpuRatio: number;
  /** CPUs the process may use: the CPUs it may run on, or its cgroup's quota when smaller. */
  cpuLimit: number;
  rssBytes: number;
  /** The cgroup memory limit, else the host's memory. */
  memoryLimitBytes: number;
  memoryRatio: number;
}

export class ResourceSampler {
  readonly cpuLimit = cpuBudget().usable;
  readonly memoryLimitBytes = memoryLimit();
  private lastCpu = process.cpuUsage();
  private lastAt = performance.now();
  private lastRss = 0;

  sample(): ResourceSample {
    const cpu = process.cpuUsage();
    const now = performance.now();
    const usedUs = cpu.user - this.lastCpu.user + (cpu.system - this.lastCpu.system);
    const elapsedUs = (now - this.lastAt) * 1000;
    this.lastCpu = cpu;
    this.lastAt = now;
    const rssBytes = residentBytes(this.lastRss);
    this.lastRss = rssBytes;
    return {
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      cpuRatio: elapsedUs > 0 ? usedUs / (elapsedUs * this.cpuLimit) : 0,
      cpuLimit: this.cpuLimit,
      rssBytes,
      memoryLimitBytes: this.memoryLimitBytes,
      memoryRatio: rssBytes / this.memoryLimitBytes,
    };
  }
}

/**
 * Resident memory, or `last` when it cannot be read: libuv reads /proc/self/stat, which needs a
 * free descriptor, and a process at its open-file limit threw EMFILE here every interval.
 */
function residentBytes(last: number): number {
  try {
    return process.memoryUsage.rss();
  } catch {
    return last;
  }
}

/** process.constrainedMemory() reports the cgroup limit (or a huge number without one). */
function memoryLimit(): number {
  const host = totalmem();
  const constrained = process.constrainedMemory?.() ?? 0;
  return constrained > 0 && constrained < host ? constrained : host;
}

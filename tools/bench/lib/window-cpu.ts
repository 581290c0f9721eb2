// CPU over the broadcast benchmark's measured window: the server's process tree, this
// generator process, every other user process on the machine (interference), and the busy
// shares of the server's and the generator's pinned cores.
import {
  cpuShares,
  cpuUsBetween,
  processTree,
  readCpuTimes,
  snapshotProcesses,
  threadCpuUs,
  type CpuTimes,
  type ProcessSnapshot,
} from '../../lib/proc.js';
import type { CoreShares, ThreadsCpu } from './broadcast-load-types.js';

const KTHREADD_PID = 2;
/**
 * The threads Node.js 20 starts first, before any of its own or ours: V8's platform, a
 * delayed-task thread and 4 workers (the default --v8-pool-size). They run V8's background
 * jobs: optimising compiles and the concurrent parts of garbage collection, for every isolate.
 */
const V8_PLATFORM_THREADS = 5;

export class WindowCpu {
  serverCpuUs = 0;
  /** CPU of every user process other than the server and this generator: interference. */
  otherCpuUs = 0;
  generatorCpuUs = 0;
  serverCore: CoreShares | null = null;
  generatorCore: CoreShares | null = null;
  /** The main server process's window CPU by thread, µs. */
  serverThreads: ThreadsCpu | null = null;

  private threadsStart = new Map<number, number>();
  private processesStart: ProcessSnapshot = new Map();
  private generatorCpuStart: NodeJS.CpuUsage = { user: 0, system: 0 };
  private serverCoreStart: CpuTimes | null = null;
  private generatorCoreStart: CpuTimes | null = null;

  /** serverPids: every server process (a cluster's nodes and its Redis); serverCpu, generatorCpu: CPUs as in taskset -c, or null when not pinned. */
  constructor(
    private readonly serverPids: readonly number[],
    private readonly serverCpu: string | null,
    private readonly generatorCpu: string | null,
  ) {}

  start(): void {
    this.threadsStart = threadCpuUs(this.serverPids[0]!);
    this.processesStart = snapshotProcesses();
    this.generatorCpuStart = process.cpuUsage();
    this.serverCoreStart = coreTimes(this.serverCpu);
    this.generatorCoreStart = coreTimes(this.generatorCpu);
  }

  stop(): void {
    this.serverThreads = splitThreads(this.serverPids[0]!, this.threadsStart, threadCpuUs(this.serverPids[0]!));
    const processesEnd = snapshotProcesses();
    const server = new Set<number>();
    for (const pid of this.serverPids) for (const member of processTree(processesEnd, pid)) server.add(member);
    // Ours: this process, its parent (the idle taskset re-exec wrapper) and its children,
    // the server among them. Kernel threads (children of kthreadd, pid 2) are left out too:
    // ksoftirqd doing our loopback TCP work is already in the cores' softirq share.
    const ours = processTree(processesEnd, process.pid).add(process.ppid);
    for (const kernelThread of processTree(processesEnd, KTHREADD_PID)) ours.add(kernelThread);
    this.serverCpuUs = cpuUsBetween(this.processesStart, processesEnd, server);
    const allCpuUs = cpuUsBetween(this.processesStart, processesEnd);
    this.otherCpuUs = Math.max(0, allCpuUs - cpuUsBetween(this.processesStart, processesEnd, ours));
    const cpu = process.cpuUsage(this.generatorCpuStart);
    this.generatorCpuUs = cpu.user + cpu.system;
    this.serverCore = coreShares(this.serverCoreStart, this.serverCpu);
    this.generatorCore = coreShares(this.generatorCoreStart, this.generatorCpu);
  }
}

/**
 * Window CPU of process `pid` by thread: its main thread, V8's platform threads (the first
 * V8_PLATFORM_THREADS after it by thread id, which a fresh process hands out in order), and every
 * other thread (shards, pools), busiest first. Threads that ended in the window are left out.
 */
export function splitThreads(pid: number, start: Map<number, number>, end: Map<number, number>): ThreadsCpu {
  const split: ThreadsCpu = { mainUs: 0, v8PlatformUs: 0, otherUs: [] };
  const tids = [...end.keys()].sort((a, b) => a - b);
  const firstAfterMain = tids.findIndex((tid) => tid > pid);
  tids.forEach((tid, i) => {
    const us = Math.round(end.get(tid)! - (start.get(tid) ?? 0));
    if (tid === pid) split.mainUs = us;
    else if (firstAfterMain >= 0 && i >= firstAfterMain && i < firstAfterMain + V8_PLATFORM_THREADS) split.v8PlatformUs += us;
    else split.otherUs.push(us);
  });
  split.otherUs.sort((a, b) => b - a);
  return split;
}

function coreTimes(cpu: string | null): CpuTimes | null {
  return cpu === null ? null : readCpuTimes(cpu);
}

function coreShares(start: CpuTimes | null, cpu: string | null): CoreShares | null {
  const end = coreTimes(cpu);
  return start && end ? cpuShares(start, end) : null;
}

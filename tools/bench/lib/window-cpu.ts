// CPU over the broadcast benchmark's measured window: the server's process tree, this
// generator process, every other user process on the machine (interference), and the busy
// shares of the server's and the generator's pinned cores.
import {
  cpuShares,
  cpuUsBetween,
  processTree,
  readCpuTimes,
  snapshotProcesses,
  type CpuTimes,
  type ProcessSnapshot,
} from '../../lib/proc.js';
import type { CoreShares } from './broadcast-load-types.js';

const KTHREADD_PID = 2;

export class WindowCpu {
  serverCpuUs = 0;
  /** CPU of every user process other than the server and this generator: interference. */
  otherCpuUs = 0;
  generatorCpuUs = 0;
  serverCore: CoreShares | null = null;
  generatorCore: CoreShares | null = null;

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
    this.processesStart = snapshotProcesses();
    this.generatorCpuStart = process.cpuUsage();
    this.serverCoreStart = coreTimes(this.serverCpu);
    this.generatorCoreStart = coreTimes(this.generatorCpu);
  }

  stop(): void {
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

function coreTimes(cpu: string | null): CpuTimes | null {
  return cpu === null ? null : readCpuTimes(cpu);
}

function coreShares(start: CpuTimes | null, cpu: string | null): CoreShares | null {
  const end = coreTimes(cpu);
  return start && end ? cpuShares(start, end) : null;
}

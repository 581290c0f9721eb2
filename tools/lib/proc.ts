// CPU time and memory from /proc (Linux), for processes and for whole CPUs. /proc/PID/stat's
// utime and stime cover all threads of a process; a server's child processes are added by
// walking the parent links, in case it forks workers instead of starting threads. Every reader
// answers null (or leaves the process out) where /proc is missing or the process is gone.
import { readdirSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100; // the Linux default (USER_HZ)
    }
  }
  return ticksPerSecond;
}

interface StatLine {
  ppid: number;
  /** utime + stime. */
  cpuTicks: number;
  /** utime alone: the process's own code, without the kernel's work for it (sockets, wake-ups). */
  userTicks: number;
}

function readStat(pid: number): StatLine | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null; // gone
  }
  // Field 2 (comm) is parenthesised and may hold spaces or ')': split after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
  return { ppid: Number(rest[1]), cpuTicks: Number(rest[11]) + Number(rest[12]), userTicks: Number(rest[11]) };
}

/** CPU seconds (user + system, all threads) that process `pid` has used so far, or null. */
export function processCpuSeconds(pid: number): number | null {
  const stat = readStat(pid);
  return stat ? stat.cpuTicks / clockTicks() : null;
}

/** Resident memory of process `pid` (all its threads), bytes, or null. */
export function processRssBytes(pid: number): number | null {
  return processRss(pid)?.rss ?? null;
}

/**
 * Resident memory of process `pid` (all its threads), bytes, in all and in its two parts:
 * anonymous (heaps, malloc) and file-backed (mapped files such as LMDB's, code); or null.
 */
export function processRss(pid: number): { rss: number; anon: number; file: number } | null {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    return null; // gone
  }
  const kB = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  const rss = kB('VmRSS');
  return Number.isNaN(rss) ? null : { rss, anon: kB('RssAnon'), file: kB('RssFile') };
}

/** CPU ticks (user + system) and parent of every process, at one moment. */
export type ProcessSnapshot = Map<number, StatLine>;

export function snapshotProcesses(): ProcessSnapshot {
  const stats: ProcessSnapshot = new Map();
  for (const name of readdirSync('/proc')) {
    const id = Number(name);
    if (!Number.isInteger(id)) continue;
    const stat = readStat(id);
    if (stat) stats.set(id, stat);
  }
  return stats;
}

/** `pid` and its descendants in a snapshot. */
export function processTree(snapshot: ProcessSnapshot, pid: number): Set<number> {
  const tree = new Set<number>([pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [id, stat] of snapshot) {
      if (!tree.has(id) && tree.has(stat.ppid)) {
        tree.add(id);
        grew = true;
      }
    }
  }
  return tree;
}

/**
 * Microseconds of CPU used between two snapshots by the processes in `pids` (all processes
 * when omitted). A process that started in between counts in full; one that exited in
 * between is missed, so totals over all processes are a lower bound.
 */
export function cpuUsBetween(before: ProcessSnapshot, after: ProcessSnapshot, pids?: Set<number>, mode: 'user+system' | 'user' = 'user+system'): number {
  const field = mode === 'user' ? 'userTicks' : 'cpuTicks';
  let ticks = 0;
  for (const [id, stat] of after) {
    if (pids && !pids.has(id)) continue;
    ticks += stat[field] - (before.get(id)?.[field] ?? 0);
  }
  return (ticks * 1_000_000) / clockTicks();
}

/** One CPU's time counters from /proc/stat, in clock ticks. */
export interface CpuTimes {
  user: number;
  system: number;
  softirq: number;
  /** irq, steal and the rest that is neither idle nor the above. */
  other: number;
  idle: number;
}

/** Counters of CPU number `cpu` (as in `taskset -c`), or null when /proc/stat has no such line. */
export function readCpuTimes(cpu: string): CpuTimes | null {
  let text: string;
  try {
    text = readFileSync('/proc/stat', 'latin1');
  } catch {
    return null;
  }
  const line = text.split('\n').find((l) => l.startsWith(`cpu${cpu} `));
  if (!line) return null;
  // cpuN user nice system idle iowait irq softirq steal guest guest_nice
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = line
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  return { user: user + nice, system, softirq, other: irq + steal, idle: idle + iowait };
}

/**
 * Where a CPU's time went between two readings, as shares of the interval (0..1). `busy`
 * includes kernel time that no process is charged for (softirq: loopback TCP work), which
 * process CPU counters miss.
 */
export function cpuShares(before: CpuTimes, after: CpuTimes) {
  const d = (k: keyof CpuTimes): number => after[k] - before[k];
  const total = Math.max(1, d('user') + d('system') + d('softirq') + d('other') + d('idle'));
  const share = (ticks: number): number => Math.round((ticks / total) * 1000) / 1000;
  return {
    busy: share(total - d('idle')),
    user: share(d('user')),
    system: share(d('system')),
    softirq: share(d('softirq')),
  };
}

/**
 * Per thread (tid) of process `pid`: CPU µs it has used so far, from schedstat's run time in ns
 * (stat's utime and stime count 10 ms ticks: too coarse for a thread that runs a few ms a second).
 */
export function threadCpuUs(pid: number): Map<number, number> {
  return perThread(pid, 'schedstat', (text) => Number(text.split(' ')[0]) / 1000);
}

/** Whether every thread of process `pid` is stopped (state T, as after SIGSTOP): the signal reaches each thread when it next runs. */
export function allThreadsStopped(pid: number): boolean {
  // stat's third field is the state; the second, the thread's name in parentheses, may hold spaces.
  const running = perThread(pid, 'stat', (text) => (text.slice(text.lastIndexOf(')') + 2).startsWith('T') ? 0 : 1));
  return [...running.values()].every((r) => r === 0);
}

/** Per thread (tid) of process `pid`: how often it has blocked and been woken (voluntary context switches) so far. */
export function threadWakeups(pid: number): Map<number, number> {
  return perThread(pid, 'status', (text) => Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(text)?.[1]));
}

/** A number read from /proc/PID/task/TID/`file` for each thread of `pid`; a thread that ended meanwhile, or a NaN, is left out. */
function perThread(pid: number, file: string, read: (text: string) => number): Map<number, number> {
  const values = new Map<number, number>();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return values; // gone
  }
  for (const tid of tids) {
    try {
      const value = read(readFileSync(`/proc/${pid}/task/${tid}/${file}`, 'latin1'));
      if (Number.isFinite(value)) values.set(Number(tid), value);
    } catch {
      // the thread ended meanwhile
    }
  }
  return values;
}

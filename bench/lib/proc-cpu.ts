// CPU time of another process, from /proc (Linux). /proc/PID/stat's utime and stime cover all
// threads of the process; child processes are added by walking the parent links, in case a
// server forks workers instead of starting threads.
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
  cpuTicks: number;
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
  return { ppid: Number(rest[1]), cpuTicks: Number(rest[11]) + Number(rest[12]) };
}

/** Microseconds of CPU (user + system) used so far by `pid`, its threads and its descendants. */
export function processTreeCpuUs(pid: number): number {
  const stats = new Map<number, StatLine>();
  for (const name of readdirSync('/proc')) {
    const id = Number(name);
    if (!Number.isInteger(id)) continue;
    const stat = readStat(id);
    if (stat) stats.set(id, stat);
  }
  const inTree = new Set<number>([pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [id, stat] of stats) {
      if (!inTree.has(id) && inTree.has(stat.ppid)) {
        inTree.add(id);
        grew = true;
      }
    }
  }
  let ticks = 0;
  for (const id of inTree) ticks += stats.get(id)?.cpuTicks ?? 0;
  return (ticks * 1_000_000) / clockTicks();
}

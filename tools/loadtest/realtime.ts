/**
 * Loadgen threads at a real-time priority, so that a due message leaves on time.
 *
 * On a 2-core machine the server's threads, the kernel's workers and the generator share the
 * cores. At normal priority a loadgen thread woken for a due message waited for a core often
 * enough that its schedule lag was P99 1.3-1.7 ms (quick suite); `perf sched timehist` showed
 * waits of 0.2-2 ms, behind the server's threads and behind kernel block-I/O workers. Under
 * SCHED_FIFO it preempts them at once (with the pacer's spin lead and the schedule's grid, the
 * lag P99 went to 0.04-0.14 ms in nine runs, under 0.1 in 16 of their 18 scenarios): it is
 * the client, which on a real network would not share the server's cores.
 *
 * The threads spend most of their time blocked, and the pacer's spin has a budget
 * (pacer.ts), so they leave the server what it had; the kernel's real-time throttling
 * (sched_rt_runtime_us, 95% by default) bounds a runaway one. Node has no call for
 * sched_setscheduler(2): `chrt` (util-linux) sets it on this thread's id. It needs
 * CAP_SYS_NICE, or an RLIMIT_RTPRIO of at least REALTIME_PRIORITY (`ulimit -r`); without
 * either the thread stays at normal priority and the report says why.
 */
import { execFileSync } from 'node:child_process';
import { readlinkSync } from 'node:fs';

/** Above every normal thread; below the kernel's own real-time threads (50 and up). */
export const REALTIME_PRIORITY = 10;

/** Puts the calling thread under SCHED_FIFO; returns what it runs at, for the report. */
export function enterRealtime(): string {
  let tid: string;
  try {
    // "PID/task/TID": Linux's name for the calling thread.
    tid = readlinkSync('/proc/thread-self').split('/').pop() ?? '';
  } catch {
    return 'normal (no /proc/thread-self: not Linux)';
  }
  try {
    execFileSync('chrt', ['--fifo', '--pid', String(REALTIME_PRIORITY), tid], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 5000 });
    return `SCHED_FIFO ${REALTIME_PRIORITY}`;
  } catch (err) {
    const e = err as { stderr?: Buffer; code?: string; message: string };
    const why = e.code === 'ENOENT' ? 'chrt not found' : (e.stderr?.toString().trim().split('\n').pop() ?? e.message);
    return `normal (${why})`;
  }
}

// What the server's busiest thread (a shard, or the baseline's only thread) waited for while it
// was ready to run, from the kernel's scheduler events (`perf sched record`) over the measured
// window. A latency tail on one pinned core is made of such waits, and the kernel knows who ran
// instead: another thread of the server, another process, a kernel thread, or nobody (the CPU
// was idle: a virtual CPU that the host has yet to wake). Unlike the end-to-end figures, this
// does not depend on the load generator keeping up: a saturated generator changes how often
// the thread is woken, not what runs in its place.
//
// `perf sched timehist -w` prints one line per switch-out (when, CPU, task[tid/pid], wait, sch
// delay, run time, in ms) and one per wake-up ("<waker> awakened: task[tid/pid]").
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/** A wait to run longer than this counts as long, and what ran instead is looked up. */
export const LONG_WAIT_MS = 0.2;
/** Names of what ran instead, kept in the report: the largest ones, the rest summed. */
const KEEP_NAMES = 8;

export interface Switch {
  /** Switch-out time, s. */
  at: number;
  cpu: number;
  name: string;
  /** -1 for the idle task. */
  tid: number;
  pid: number;
  /** From its wake-up to running, ms. */
  delayMs: number;
  runMs: number;
}

export interface Wakeup {
  wakerName: string;
  /** -1 when the waker is the idle task or an interrupt (no id printed). */
  wakerPid: number;
  wakerTid: number;
  tid: number;
}

export type SchedReport =
  | { available: false; reason: string }
  | {
      available: true;
      seconds: number;
      tid: number;
      runsPerS: number;
      delayMs: { p50: number; p99: number; p999: number; max: number };
      /** Waits to run over LONG_WAIT_MS: how many a second, and their ms in all. */
      longWaits: { thresholdMs: number; perS: number; totalMs: number };
      /** Within those waits, ms that each other runner had the thread's CPU; `nothing in the guest`: no task of this machine ran (the host had the CPU). */
      ranInsteadMs: Record<string, number>;
      /** Wake-ups of the thread a second, by who woke it. */
      wokenByPerS: Record<string, number>;
    };

const SWITCH = /^\s*(\d+\.\d+)\s+\[(\d+)\]\s+(.+?)\[(\d+)(?:\/(\d+))?\]\s+(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)\s*$/;
const IDLE = /^\s*(\d+\.\d+)\s+\[(\d+)\]\s+<idle>\s+(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)\s*$/;
const WAKEUP = /^\s*\d+\.\d+\s+\[\d+\]\s+(.+?)(?:\[(\d+)(?:\/(\d+))?\])?\s+awakened: .+?\[(\d+)(?:\/\d+)?\]\s*$/;

/** The switches and wake-ups in `perf sched timehist -w` output; other lines are skipped. */
export function parseTimehist(lines: Iterable<string>): { switches: Switch[]; wakeups: Wakeup[] } {
  const switches: Switch[] = [];
  const wakeups: Wakeup[] = [];
  for (const line of lines) {
    let m = WAKEUP.exec(line);
    if (m) {
      const wakerTid = m[2] === undefined ? -1 : Number(m[2]);
      wakeups.push({ wakerName: m[1]!.trim(), wakerTid, wakerPid: m[3] === undefined ? wakerTid : Number(m[3]), tid: Number(m[4]) });
      continue;
    }
    m = IDLE.exec(line);
    if (m) {
      switches.push({ at: Number(m[1]), cpu: Number(m[2]), name: '<idle>', tid: -1, pid: -1, delayMs: 0, runMs: Number(m[5]) });
      continue;
    }
    m = SWITCH.exec(line);
    if (m) {
      const tid = Number(m[4]);
      // The main thread of a process is printed without its pid: its tid is the pid.
      switches.push({ at: Number(m[1]), cpu: Number(m[2]), name: m[3]!.trim(), tid, pid: m[5] === undefined ? tid : Number(m[5]), delayMs: Number(m[7]), runMs: Number(m[8]) });
    }
  }
  return { switches, wakeups };
}

/** Who another runner is, as the report names it. */
function runnerName(s: { name: string; tid: number; pid: number }, serverPid: number, generatorPid: number): string {
  if (s.tid === -1) return 'idle (the CPU waking)';
  if (s.pid === serverPid) return s.tid === serverPid ? 'server: main thread' : 'server: other threads';
  if (s.pid === generatorPid) return 'load generator';
  return s.name;
}

function wakerName(w: Wakeup, serverPid: number, generatorPid: number): string {
  if (w.wakerTid === -1) return 'timer or interrupt on an idle CPU';
  if (w.wakerPid === generatorPid) return 'load generator (network)';
  return runnerName({ name: w.wakerName, tid: w.wakerTid, pid: w.wakerPid }, serverPid, generatorPid);
}

const round3 = (n: number): number => Math.round(n * 1000) / 1000;

/** The report for the busiest thread of `serverPid` over `seconds`. */
export function attribute(parsed: { switches: Switch[]; wakeups: Wakeup[] }, serverPid: number, generatorPid: number, seconds: number): SchedReport {
  const runTime = new Map<number, number>();
  for (const s of parsed.switches) if (s.pid === serverPid) runTime.set(s.tid, (runTime.get(s.tid) ?? 0) + s.runMs);
  if (runTime.size === 0) return { available: false, reason: `no switch of server process ${serverPid} was recorded` };
  const tid = [...runTime].sort((a, b) => b[1] - a[1])[0]![0];
  const own = parsed.switches.filter((s) => s.tid === tid);
  const delays = own.map((s) => s.delayMs).sort((a, b) => a - b);
  const at = (q: number): number => delays[Math.min(delays.length - 1, Math.floor(q * delays.length))]!;

  // Per CPU, the other runners in time order: one CPU runs one at a time, so they end and start in order.
  const byCpu = new Map<number, Switch[]>();
  for (const s of parsed.switches) {
    if (s.tid === tid) continue;
    const list = byCpu.get(s.cpu);
    if (list) list.push(s);
    else byCpu.set(s.cpu, [s]);
  }
  for (const list of byCpu.values()) list.sort((a, b) => a.at - b.at);
  const ranInstead = new Map<string, number>();
  let longCount = 0;
  let longMs = 0;
  for (const s of own) {
    if (s.delayMs <= LONG_WAIT_MS) continue;
    longCount++;
    longMs += s.delayMs;
    const started = s.at - s.runMs / 1000;
    const woken = started - s.delayMs / 1000;
    let covered = 0;
    const others = byCpu.get(s.cpu) ?? [];
    for (let i = firstEndingAfter(others, woken); i < others.length; i++) {
      const o = others[i]!;
      if (o.at - o.runMs / 1000 >= started) break;
      const overlap = Math.min(o.at, started) - Math.max(o.at - o.runMs / 1000, woken);
      if (overlap <= 0) continue;
      const name = runnerName(o, serverPid, generatorPid);
      ranInstead.set(name, (ranInstead.get(name) ?? 0) + overlap * 1000);
      covered += overlap * 1000;
    }
    if (s.delayMs > covered) ranInstead.set('nothing in the guest', (ranInstead.get('nothing in the guest') ?? 0) + s.delayMs - covered);
  }
  const wokenBy = new Map<string, number>();
  for (const w of parsed.wakeups) {
    if (w.tid !== tid) continue;
    const name = wakerName(w, serverPid, generatorPid);
    wokenBy.set(name, (wokenBy.get(name) ?? 0) + 1 / seconds);
  }
  return {
    available: true,
    seconds,
    tid,
    runsPerS: round3(own.length / seconds),
    delayMs: { p50: round3(at(0.5)), p99: round3(at(0.99)), p999: round3(at(0.999)), max: round3(delays[delays.length - 1]!) },
    longWaits: { thresholdMs: LONG_WAIT_MS, perS: round3(longCount / seconds), totalMs: round3(longMs) },
    ranInsteadMs: largest(ranInstead),
    wokenByPerS: largest(wokenBy),
  };
}

/** The index of the first of `sorted` (by `at`) that ends after `time`. */
function firstEndingAfter(sorted: readonly Switch[], time: number): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (sorted[mid]!.at <= time) low = mid + 1;
    else high = mid;
  }
  return low;
}

/** The KEEP_NAMES largest entries, the rest summed as `others`; rounded. */
function largest(values: Map<string, number>): Record<string, number> {
  const sorted = [...values].sort((a, b) => b[1] - a[1]);
  const out: Record<string, number> = {};
  for (const [name, v] of sorted.slice(0, KEEP_NAMES)) out[name] = round3(v);
  const rest = sorted.slice(KEEP_NAMES).reduce((sum, [, v]) => sum + v, 0);
  if (rest > 0) out.others = round3(rest);
  return out;
}

/** One recording of every CPU's scheduler events for `seconds`, started now. */
export class SchedTrace {
  private readonly dir = mkdtempSync(join(tmpdir(), 'ocs-sched-'));
  private readonly file = join(this.dir, 'sched.data');
  private readonly recorded: Promise<string | null>;

  private constructor(private readonly seconds: number) {
    this.recorded = new Promise((resolve) => {
      const child = spawn('perf', ['sched', 'record', '-a', '-o', this.file, '--', 'sleep', String(seconds)], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.once('error', (err) => resolve(`perf: ${err.message}`));
      child.once('exit', (code) => resolve(code === 0 ? null : `perf sched record exited ${code}: ${firstLine(stderr)}`));
    });
  }

  /** Starts a recording, or says why there can be none (no perf, or no permission). */
  static start(seconds: number): SchedTrace | string {
    const probe = spawnSync('perf', ['--version'], { encoding: 'utf8' });
    if (probe.error || probe.status !== 0) return 'perf is not installed (Debian: linux-perf)';
    return new SchedTrace(seconds);
  }

  /** Waits for the recording to end, then reads it for `serverPid`'s busiest thread. */
  async result(serverPid: number, generatorPid: number): Promise<SchedReport> {
    try {
      const failed = await this.recorded;
      if (failed !== null) return { available: false, reason: failed };
      const child = spawn('perf', ['sched', 'timehist', '-w', '-i', this.file], { stdio: ['ignore', 'pipe', 'ignore'] });
      const lines: string[] = [];
      for await (const line of createInterface({ input: child.stdout })) lines.push(line);
      return attribute(parseTimehist(lines), serverPid, generatorPid, this.seconds);
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

function firstLine(text: string): string {
  return text.split('\n').find((line) => line.trim() !== '')?.trim() ?? '';
}

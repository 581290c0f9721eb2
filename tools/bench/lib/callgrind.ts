/**
 * A server run under valgrind's callgrind, which counts the instructions each function runs
 * in user space: the same figure for the same work whatever else the host does, where CPU
 * time on a shared VM moves by 10-20% from one run to the next. What it does not count: the
 * kernel (system calls, the network stack), cache misses, waiting.
 *
 * The server runs with --perf-basic-prof, so that V8's compiled JavaScript, which callgrind
 * sees as bare addresses, is named from /tmp/perf-PID.map. A window is measured by zeroing the
 * counters at its start (callgrind_control -z) and dumping them at its end (-d).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Why callgrind cannot run here, or null when it can. */
export function callgrindMissing(): string | null {
  for (const tool of ['valgrind', 'callgrind_control']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} not found (Debian: apt-get install valgrind)`;
  }
  return null;
}

/**
 * `argv` (a node command line, possibly behind taskset) run under callgrind, its dumps named
 * `outPrefix`.PID[.N]. --smc-check: V8 writes and rewrites code in its heap.
 */
export function underCallgrind(argv: readonly string[], outPrefix: string): string[] {
  const node = argv.indexOf(process.execPath);
  if (node < 0) throw new Error(`not a node command line: ${argv.join(' ')}`);
  return [
    ...argv.slice(0, node),
    'valgrind',
    '--tool=callgrind',
    `--callgrind-out-file=${outPrefix}.%p`,
    '--smc-check=all-non-file',
    process.execPath,
    '--perf-basic-prof',
    ...argv.slice(node + 1),
  ];
}

export function zeroCounters(pid: number): void {
  execFileSync('callgrind_control', ['-z', String(pid)], { stdio: 'ignore' });
}

/** Dumps the counters since the last zero; returns the dump's file. */
export function dumpCounters(pid: number, outPrefix: string, label: string): string {
  execFileSync('callgrind_control', ['-d', label, String(pid)], { stdio: 'ignore' });
  const dir = dirname(outPrefix);
  const base = `${outPrefix.slice(dir.length + 1)}.${pid}.`;
  for (const name of readdirSync(dir).filter((f) => f.startsWith(base))) {
    const file = join(dir, name);
    if (readFileSync(file, 'utf8').includes(`\ndesc: Trigger: dump ${label}\n`)) return file;
  }
  throw new Error(`callgrind wrote no dump "${label}" for ${pid} in ${dir}`);
}

/**
 * Where a function's instructions are counted: the first pattern that matches its name, or
 * else its object file (the uWS addon's and libc's functions have no symbols), wins.
 */
export const CATEGORIES: ReadonlyArray<readonly [string, RegExp]> = [
  ['metrics', /\/src\/metrics\/|hdr-histogram-js|ieee754::pow/],
  ['json', /Json|JSON|FastDtoa|DoubleToCString|NumberToString/],
  ['compiler', /compiler::|Compiler|Parser|Parse|Scanner|Bytecode|interpreter::|baseline::|Maglev|Zone|AstNode|Deoptimiz|CompileLazy/],
  ['gc', /Heap|Marking|Scaveng|Sweep|Evacuat|MemoryChunk|SlotSet|RememberedSet|IteratePointers|SizeFromMap|GCTracer|Allocat|Factory::New|Filler/],
  ['javascript', /^(JS|RegExp|Builtins?)[:_]/],
  ['uws', /uWS::|ofats::|\buws_linux[^ ]*\.node$/],
  ['libc', /\/lib[^ ]*\/libc\.so[^ ]*$|\/libstdc\+\+\.so[^ ]*$|\/libm\.so[^ ]*$/],
];

export interface CallgrindWindow {
  /** Instructions over the window, all threads. */
  instructions: number;
  byCategory: Record<string, number>;
  /** The functions with the most instructions of their own. */
  top: Array<{ name: string; instructions: number }>;
  /** Every function's instructions of its own, by name. */
  functions: Map<string, number>;
}

/** Reads a dump: each function's own instructions (calls excluded), named, and summed by CATEGORIES. */
export function readWindow(file: string, pid: number, topN = 25): CallgrindWindow {
  const names = resolveJit(pid);
  const self = selfCosts(readFileSync(file, 'utf8'));
  const byCategory: Record<string, number> = Object.fromEntries([...CATEGORIES.map(([c]) => [c, 0] as const), ['other', 0]]);
  let instructions = 0;
  const named = new Map<string, number>();
  for (const [raw, { cost, object }] of self) {
    const name = names(raw);
    instructions += cost;
    named.set(name, (named.get(name) ?? 0) + cost);
    const category = CATEGORIES.find(([, pattern]) => pattern.test(name))?.[0] ?? CATEGORIES.find(([, pattern]) => pattern.test(object))?.[0] ?? 'other';
    byCategory[category]! += cost;
  }
  const top = [...named].sort((a, b) => b[1] - a[1]).slice(0, topN).map(([name, n]) => ({ name, instructions: n }));
  return { instructions, byCategory, top, functions: named };
}

/** Removes a run's dumps and V8's perf map. */
export function removeRunFiles(outPrefix: string, pid: number): void {
  const dir = dirname(outPrefix);
  const base = `${outPrefix.slice(dir.length + 1)}.${pid}`;
  for (const name of readdirSync(dir).filter((f) => f.startsWith(base))) rmSync(join(dir, name), { force: true });
  rmSync(`/tmp/perf-${pid}.map`, { force: true });
}

/**
 * Self cost per function, with its object file, in callgrind's format: `ob=` and `fn=` set the
 * object and function, a cost line is "position cost", and the cost line after `calls=` is the
 * inclusive cost of a call, not the caller's own. Names are compressed, per kind: "(id) name"
 * the first time, "(id)" after.
 */
function selfCosts(text: string): Map<string, { cost: number; object: string }> {
  const ids = { fn: new Map<string, string>(), ob: new Map<string, string>() };
  const name = (kind: 'fn' | 'ob', value: string): string => {
    const m = /^\((\d+)\)(?: (.*))?$/.exec(value);
    if (!m) return value;
    if (m[2] !== undefined) ids[kind].set(m[1]!, m[2]);
    return ids[kind].get(m[1]!) ?? value;
  };
  const self = new Map<string, { cost: number; object: string }>();
  let fn = '';
  let object = '';
  let callCost = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('fn=')) fn = name('fn', line.slice(3));
    else if (line.startsWith('ob=')) object = name('ob', line.slice(3));
    else if (line.startsWith('cfn=')) name('fn', line.slice(4));
    else if (line.startsWith('cob=')) name('ob', line.slice(4));
    else if (line.startsWith('calls=')) callCost = true;
    else if (/^([+-]?\d|\*)/.test(line)) {
      if (callCost) {
        callCost = false;
        continue;
      }
      const entry = self.get(fn) ?? self.set(fn, { cost: 0, object }).get(fn)!;
      entry.cost += Number(line.split(' ')[1] ?? 0);
    }
  }
  return self;
}

/** Names "0x..." addresses of compiled JavaScript from V8's perf map ("start size name" per line). */
function resolveJit(pid: number): (raw: string) => string {
  const file = `/tmp/perf-${pid}.map`;
  if (!existsSync(file)) return (raw) => raw;
  const entries = readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((line) => {
      const [start, size, ...rest] = line.split(' ');
      return { start: parseInt(start!, 16), end: parseInt(start!, 16) + parseInt(size!, 16), name: rest.join(' ') };
    })
    .sort((a, b) => a.start - b.start);
  return (raw) => {
    const m = /^0x([0-9a-f]+)/.exec(raw);
    if (!m) return raw;
    const address = parseInt(m[1]!, 16);
    let lo = 0;
    let hi = entries.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (entries[mid]!.start <= address) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found >= 0 && address < entries[found]!.end ? entries[found]!.name : raw;
  };
}

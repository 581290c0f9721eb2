// Runs a server under test as a child process: start it, wait for its pino "ready" line, keep
// draining its output (a full stdout pipe would block the server), stop it. The load tester,
// the benchmarks and the tests all start servers this way: the real one (SERVER_MAIN) and the
// small ones the benchmarks and tests bring (anything that logs {"msg":"ready","port":N}).
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The built server's entry point, dist/src/main.js (this file runs as dist/tools/lib/server-process.js). */
export const SERVER_MAIN = fileURLToPath(new URL('../../src/main.js', import.meta.url));

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface StartOptions {
  /** Variables added to this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** How long to wait for the "ready" line (default 30 s). */
  readyTimeoutMs?: number;
  /** 'inherit' passes the server's stderr through to ours instead of reading it (default 'pipe'). */
  stderr?: 'pipe' | 'inherit';
  /** Called with every line of output, from the first one on. */
  onLine?(line: string, stream: 'stdout' | 'stderr'): void;
}

export interface ServerProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly port: number;
  /** The parsed "ready" log line. */
  readonly ready: Record<string, unknown>;
  /** Log lines at pino level warn (40) or above, after ready. */
  readonly warnings: string[];
  /** Settles when the process has exited. */
  readonly exited: Promise<ChildExit>;
  /** The last lines of output, both streams. */
  tail(): string[];
  /** Sends `signal` (SIGTERM), then SIGKILL after `graceMs` (10 s); resolves once the process has exited. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<ChildExit>;
}

const KEEP_LINES = 40;
const KEEP_WARNINGS = 20;
const WARN_LEVEL = 40;

/**
 * Spawns `argv` and resolves when it logs a JSON line on stdout whose `msg` is "ready" with a
 * numeric `port`. If it exits or times out first, it is killed and the promise rejects with
 * the command and the last lines of its output.
 */
export function startServer(argv: string[], opts: StartOptions = {}): Promise<ServerProcess> {
  const [command, ...args] = argv;
  if (!command) throw new Error('empty server command');
  const readyTimeoutMs = opts.readyTimeoutMs ?? 30_000;
  const child = spawn(command, args, {
    env: opts.env ? { ...process.env, ...opts.env } : process.env,
    stdio: ['ignore', 'pipe', opts.stderr ?? 'pipe'],
  });
  const tail: string[] = [];
  const warnings: string[] = [];
  const remember = (line: string, stream: 'stdout' | 'stderr'): void => {
    tail.push(line);
    if (tail.length > KEEP_LINES) tail.shift();
    opts.onLine?.(line, stream);
  };
  if (child.stderr) createInterface({ input: child.stderr }).on('line', (line) => remember(line, 'stderr'));
  const exited = new Promise<ChildExit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

  return new Promise<ServerProcess>((resolve, reject) => {
    let ready: Record<string, unknown> | null = null;
    let failed = false;
    const fail = (why: string): void => {
      if (failed) return;
      failed = true;
      clearTimeout(timer);
      const report = (): void => reject(new Error(`${why}\n  command: ${argv.join(' ')}\n  last output:\n    ${tail.join('\n    ')}`));
      // Never leave the child behind: kill it and report once it is gone (at once if it never started).
      if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return report();
      child.kill('SIGKILL');
      void exited.then(report);
    };
    const timer = setTimeout(() => fail(`no "ready" line within ${readyTimeoutMs} ms`), readyTimeoutMs);
    child.once('error', (err) => fail(`could not start ${command}: ${err.message}`));
    void exited.then(({ code, signal }) => {
      if (!ready) fail(`server exited before it was ready (code ${code}, signal ${signal})`);
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      remember(line, 'stdout');
      const entry = parseLogLine(line);
      if (!entry) return;
      if (ready) {
        if (typeof entry.level === 'number' && entry.level >= WARN_LEVEL && warnings.length < KEEP_WARNINGS) warnings.push(line);
        return;
      }
      if (entry.msg === 'ready' && typeof entry.port === 'number' && !failed) {
        ready = entry;
        clearTimeout(timer);
        resolve({
          child,
          pid: child.pid!,
          port: entry.port,
          ready: entry,
          warnings,
          exited,
          tail: () => [...tail],
          stop: (signal, graceMs) => stop(child, exited, signal, graceMs),
        });
      }
    });
  });
}

/** A pino log line as an object; null for anything else. */
export function parseLogLine(line: string): Record<string, unknown> | null {
  if (!line.startsWith('{')) return null;
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

async function stop(child: ChildProcess, exited: Promise<ChildExit>, signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<ChildExit> {
  if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  const result = await exited;
  clearTimeout(timer);
  return result;
}

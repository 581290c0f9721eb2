// Runs a server under test as a child process: start it, wait for its pino "ready" line,
// keep draining its output (a full stdout pipe would block the server), stop it.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface ServerProcess {
  readonly pid: number;
  readonly port: number;
  /** The parsed "ready" log line. */
  readonly ready: Record<string, unknown>;
  /** Log lines at pino level warn (40) or above, after ready. */
  readonly warnings: string[];
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
  stop(graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const KEEP_LINES = 40;
const KEEP_WARNINGS = 20;

/**
 * Spawns `argv` and resolves when it logs a JSON line whose `msg` is "ready" with a numeric
 * `port`. Rejects with the last lines of output if it exits or times out first.
 */
export function startServer(argv: string[], readyTimeoutMs = 30_000): Promise<ServerProcess> {
  const [command, ...args] = argv;
  if (!command) throw new Error('empty server command');
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const tail: string[] = [];
  const warnings: string[] = [];
  const remember = (line: string): void => {
    tail.push(line);
    if (tail.length > KEEP_LINES) tail.shift();
  };
  createInterface({ input: child.stderr! }).on('line', remember);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );

  return new Promise<ServerProcess>((resolve, reject) => {
    let ready: Record<string, unknown> | null = null;
    const fail = (why: string): void => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`${why}; last output:\n${tail.join('\n')}`));
    };
    const timer = setTimeout(() => fail(`no "ready" line within ${readyTimeoutMs} ms`), readyTimeoutMs);
    child.once('error', (err) => fail(`could not start ${command}: ${err.message}`));
    void exited.then(({ code, signal }) => {
      if (!ready) fail(`server exited before ready (code ${code}, signal ${signal})`);
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      remember(line);
      const entry = parseLogLine(line);
      if (!entry) return;
      if (ready) {
        if (typeof entry.level === 'number' && entry.level >= 40 && warnings.length < KEEP_WARNINGS) warnings.push(line);
        return;
      }
      if (entry.msg === 'ready' && typeof entry.port === 'number') {
        ready = entry;
        clearTimeout(timer);
        resolve({ pid: child.pid!, port: entry.port, ready: entry, warnings, stop: (graceMs) => stop(child, exited, graceMs) });
      }
    });
  });
}

function parseLogLine(line: string): Record<string, unknown> | null {
  if (!line.startsWith('{')) return null;
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

async function stop(
  child: ChildProcess,
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>,
  graceMs = 10_000,
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  const result = await exited;
  clearTimeout(timer);
  return result;
}

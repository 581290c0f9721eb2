/**
 * Starts the server under test as a child process when the user gave no --host, so that
 * `npm run loadtest` works on a fresh checkout: a temp YAML config on port 0, wait for the
 * pino line whose msg is "ready" (it carries the port), SIGTERM at the end. Also reads the
 * child's memory and CPU from /proc, for the resource figures when /stats has none.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OcsError } from '../protocol/errors.js';

export interface LaunchOptions {
  /** Command to run; default: this checkout's dist/src/main.js with a generated config. */
  command?: string[];
  shards?: number;
  maxConnections?: number;
  readyTimeoutMs?: number;
  /** Called with every stdout/stderr line of the server (for --verbose). */
  onLine?: (line: string) => void;
}

export interface LaunchedServer {
  host: string;
  port: number;
  shards: number | null;
  pid: number;
  /** Resident memory of the server process (all its threads), bytes; null when unreadable. */
  rssBytes(): number | null;
  /** CPU seconds (user + system) the server process has used so far. */
  cpuSeconds(): number | null;
  stop(): Promise<void>;
  logTail(): string[];
}

export const SERVER_ENTRY = fileURLToPath(new URL('../main.js', import.meta.url));

export function defaultServerConfig(shards: number, maxConnections: number): string {
  return [
    'websocket:',
    `  server: { host: 127.0.0.1, port: 0, shards: ${shards}, max_connections: ${maxConnections} }`,
    '  auth: { allow_anonymous: true }',
    '  limits: { messages_per_second: 0, connection_attempts_per_ip: 0, unauthenticated_per_ip: 0 }',
    '',
  ].join('\n');
}

export async function launchServer(opts: LaunchOptions = {}): Promise<LaunchedServer> {
  let tempDir: string | null = null;
  let command = opts.command;
  if (!command) {
    tempDir = mkdtempSync(join(tmpdir(), 'ocs-loadtest-'));
    const configFile = join(tempDir, 'server.yaml');
    writeFileSync(configFile, defaultServerConfig(opts.shards ?? 2, opts.maxConnections ?? 20_000));
    command = [process.execPath, SERVER_ENTRY, '--config', configFile];
  }
  const [exe, ...args] = command;
  const child = spawn(exe!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const tail: string[] = [];
  const remember = (line: string): void => {
    tail.push(line);
    if (tail.length > 40) tail.shift();
    opts.onLine?.(line);
  };
  const cleanup = (): void => {
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
    tempDir = null;
  };

  try {
    const ready = await waitForReady(child, remember, opts.readyTimeoutMs ?? 20_000);
    return {
      host: typeof ready.host === 'string' && ready.host !== '0.0.0.0' ? ready.host : '127.0.0.1',
      port: ready.port,
      shards: typeof ready.shards === 'number' ? ready.shards : null,
      pid: child.pid!,
      rssBytes: () => readRss(child.pid!),
      cpuSeconds: () => readCpuSeconds(child.pid!),
      logTail: () => [...tail],
      stop: async () => {
        await stopChild(child);
        cleanup();
      },
    };
  } catch (err) {
    await stopChild(child);
    cleanup();
    throw new OcsError('E_STARTUP', `${(err as Error).message}\n  command: ${command.join(' ')}\n  last output:\n    ${tail.join('\n    ')}`, { cause: err });
  }
}

function waitForReady(child: ChildProcess, onLine: (l: string) => void, timeoutMs: number): Promise<{ port: number; host?: unknown; shards?: unknown }> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const done = (err: Error | null, value?: { port: number }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(value!);
    };
    const timer = setTimeout(() => done(new Error(`server did not log "ready" within ${timeoutMs} ms`)), timeoutMs);
    const lines = (stream: NodeJS.ReadableStream | null, parse: boolean): void => {
      let buf = '';
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          onLine(line);
          if (!parse || settled) continue;
          try {
            const rec = JSON.parse(line) as { msg?: unknown; port?: unknown };
            if (rec.msg === 'ready' && typeof rec.port === 'number') done(null, rec as { port: number });
          } catch {
            // not a JSON log line
          }
        }
      });
    };
    lines(child.stdout, true);
    lines(child.stderr, false);
    child.once('exit', (code, signal) => done(new Error(`server exited before it was ready (code ${code}, signal ${signal})`)));
    child.once('error', (err) => done(err));
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

export function readRss(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** utime + stime from /proc/PID/stat, in seconds (clock ticks are 100/s on Linux). */
export function readCpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may contain spaces; fields resume after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

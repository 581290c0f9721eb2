/**
 * Starts the real server for a test: as a child process (`node dist/src/main.js`, exactly what
 * `npm start` runs) or in the test's own process through the embedding API.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type RunningServer } from '../../src/index.js';
import { createLogger } from '../../src/util/logger.js';
import { deepMerge, harnessConfig, writeConfigFile } from '../../tools/lib/server-config.js';
import { parseLogLine, SERVER_MAIN as MAIN, startServer } from '../../tools/lib/server-process.js';

export { MAIN };

/** A fresh, empty directory for the message store. */
export function tempDataDir(): string {
  return mkdtempSync(join(tmpdir(), 'ocs-data-'));
}

/**
 * Test defaults: loopback, a free port, two shards, no rate limit, a fresh store, a short drain
 * (a stopped test server needs no spread of its reconnections), unless a test sets them.
 */
export function testConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return harnessConfig(
    deepMerge(
      {
        websocket: { server: { shards: 2, drain_window: 0.2 } },
        store: { data_dir: tempDataDir() },
        logging: { level: 'warn' },
      },
      overrides,
    ),
  );
}

export function writeConfig(config: Record<string, unknown>): string {
  return writeConfigFile(config).file;
}

export interface ServerProcess {
  child: ChildProcess;
  port: number;
  /** Every stdout line, parsed where it is JSON. */
  logs: Array<Record<string, unknown>>;
  stderr: () => string;
  /** Sends `signal` and resolves with the exit code (SIGKILL, and a null code, after a minute). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

/**
 * `command` runs the server instead of `node dist/src/main.js`, e.g. through a shell that
 * lowers a limit first; it is given `--config FILE`.
 */
export async function startProcess(
  config: Record<string, unknown>,
  env: NodeJS.ProcessEnv = {},
  command: readonly string[] = [process.execPath, MAIN],
): Promise<ServerProcess> {
  const file = writeConfig(deepMerge(config, { logging: { level: 'info' } }));
  const logs: Array<Record<string, unknown>> = [];
  let stderr = '';
  const server = await startServer([...command, '--config', file], {
    env,
    onLine: (line, stream) => {
      if (stream === 'stderr') stderr += line + '\n';
      else logs.push(parseLogLine(line) ?? { raw: line });
    },
  });
  const exited = server.exited.then(({ code }) => code);
  return {
    child: server.child,
    port: server.port,
    logs,
    stderr: () => stderr,
    exited,
    // A minute before SIGKILL: long enough for any shutdown_timeout a test sets.
    stop: (signal = 'SIGTERM') => server.stop(signal, 60_000).then(({ code }) => code),
  };
}

/** Runs `node dist/src/main.js ARGS` to completion (for start-up failures). */
export function runMain(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 10_000): Promise<CommandResult> {
  return runCommand(process.execPath, [MAIN, ...args], { env }, timeoutMs);
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (killed after `timeoutMs`), with `env` over the test's environment. */
export function runCommand(command: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}, timeoutMs = 10_000): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export function startInProcess(overrides: Record<string, unknown> = {}): Promise<RunningServer> {
  const merged = testConfig(overrides);
  const level = ((merged.logging as Record<string, unknown>).level as string) ?? 'warn';
  return createServer({ file: writeConfig({}), env: {}, overrides: merged, logger: createLogger(level) });
}

export { freePort } from '../../tools/lib/free-port.js';

/**
 * Starts the real server for a test: as a child process (`node dist/src/main.js`, exactly what
 * `npm start` runs) or in the test's own process through the embedding API.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { createServer, type RunningServer } from '../../src/index.js';
import { createLogger } from '../../src/util/logger.js';

export const MAIN = fileURLToPath(new URL('../../src/main.js', import.meta.url));

/** A fresh, empty directory for the message store. */
export function tempDataDir(): string {
  return mkdtempSync(join(tmpdir(), 'ocs-data-'));
}

/** Test defaults: loopback, a free port, two shards, no rate limit, a fresh store, unless a test sets them. */
export function testConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return deepMerge(
    {
      websocket: {
        server: { host: '127.0.0.1', port: 0, shards: 2 },
        auth: { allow_anonymous: true },
        limits: { messages_per_second: 0 },
      },
      store: { data_dir: tempDataDir() },
      logging: { level: 'warn' },
    },
    overrides,
  );
}

export function writeConfig(config: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'ocs-test-'));
  const file = join(dir, 'config.yaml');
  writeFileSync(file, stringify(config));
  return file;
}

export interface ServerProcess {
  child: ChildProcess;
  port: number;
  /** Every stdout line, parsed where it is JSON. */
  logs: Array<Record<string, unknown>>;
  stderr: () => string;
  /** Sends `signal` and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

export async function startProcess(config: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): Promise<ServerProcess> {
  const file = writeConfig(deepMerge(config, { logging: { level: 'info' } }));
  const child = spawn(process.execPath, [MAIN, '--config', file], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: Array<Record<string, unknown>> = [];
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    let buffered = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      let newline;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        try {
          const entry = JSON.parse(line) as Record<string, unknown>;
          logs.push(entry);
          if (entry.msg === 'ready') resolve(entry.port as number);
        } catch {
          logs.push({ raw: line });
        }
      }
    });
    void exited.then((code) => reject(new Error(`server exited with ${code} before ready: ${stderr}`)));
  });
  return {
    child,
    port,
    logs,
    stderr: () => stderr,
    exited,
    stop(signal = 'SIGTERM') {
      child.kill(signal);
      return exited;
    },
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

export function deepMerge(base: Record<string, unknown>, extra: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(extra)) {
    const current = out[key];
    out[key] =
      value && typeof value === 'object' && !Array.isArray(value) && current && typeof current === 'object' && !Array.isArray(current)
        ? deepMerge(current as Record<string, unknown>, value as Record<string, unknown>)
        : value;
  }
  return out;
}

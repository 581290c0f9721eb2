/**
 * Starts the server under test as a child process when the user gave no --host, so that
 * `npm run loadtest` works on a fresh checkout: a temp YAML config on port 0, wait for the
 * pino line whose msg is "ready" (it carries the port), SIGTERM at the end. Also reads the
 * child's memory and CPU from /proc, for the resource figures when /stats has none.
 */
import { OcsError } from '../../src/protocol/errors.js';
import { HISTORY_RULE, LOADTEST_DEFAULTS } from './defaults.js';
import { processCpuSeconds, processRssBytes } from '../lib/proc.js';
import { harnessConfig, writeConfigFile, type ConfigFile } from '../lib/server-config.js';
import { SERVER_MAIN, startServer } from '../lib/server-process.js';

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
}

export async function launchServer(opts: LaunchOptions = {}): Promise<LaunchedServer> {
  let config: ConfigFile | null = null;
  let command = opts.command;
  if (!command) {
    config = writeConfigFile(
      harnessConfig({
        websocket: {
          server: { shards: opts.shards ?? LOADTEST_DEFAULTS.shards, max_connections: opts.maxConnections ?? LOADTEST_DEFAULTS.maxConnections },
          // Only the reconnect scenario's groups (HISTORY_GROUP_PREFIX): the others keep the fast path.
          history: [HISTORY_RULE],
        },
      }),
    );
    command = [process.execPath, SERVER_MAIN, '--config', config.file];
  }
  try {
    const server = await startServer(command, {
      readyTimeoutMs: opts.readyTimeoutMs ?? LOADTEST_DEFAULTS.readyTimeoutMs,
      ...(opts.onLine && { onLine: opts.onLine }),
    });
    const { host, shards } = server.ready;
    return {
      host: typeof host === 'string' && host !== '0.0.0.0' ? host : '127.0.0.1',
      port: server.port,
      shards: typeof shards === 'number' ? shards : null,
      pid: server.pid,
      rssBytes: () => processRssBytes(server.pid),
      cpuSeconds: () => processCpuSeconds(server.pid),
      stop: async () => {
        await server.stop();
        config?.remove();
      },
    };
  } catch (err) {
    config?.remove();
    throw new OcsError('E_STARTUP', (err as Error).message, { cause: err });
  }
}

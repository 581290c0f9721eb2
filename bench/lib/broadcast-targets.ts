// The servers the broadcast benchmark can measure, and the command line that starts each one.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serverPinPrefix } from './pinning.js';

export const TARGET_NAMES = ['baseline', 'shards1', 'shards2'] as const;
export type TargetName = (typeof TARGET_NAMES)[number];

export interface PreparedTarget {
  name: TargetName;
  /** The shard count asked for. */
  shards: number;
  argv: string[];
  /** Path of the WebSocket endpoint; the user id is appended as ?user=. */
  endpoint: string;
  /** Removes temporary files (the config). */
  cleanup(): void;
}

/** dist/ of this build: this file is dist/bench/lib/broadcast-targets.js. */
const DIST = fileURLToPath(new URL('../../', import.meta.url));
const BASELINE_SERVER = join(DIST, 'bench', 'baseline-server.js');
export const REAL_SERVER = join(DIST, 'src', 'main.js');

/**
 * Returns how to start `name`, or throws when it cannot be started (the real server is not
 * built yet). `maxConnections` goes into the real server's config with headroom.
 */
export function prepareTarget(name: TargetName, maxConnections: number): PreparedTarget {
  const pin = serverPinPrefix();
  if (name === 'baseline') {
    return {
      name,
      shards: 1,
      argv: [...pin, process.execPath, BASELINE_SERVER, '--host', '127.0.0.1', '--port', '0'],
      endpoint: '/ws',
      cleanup: () => {},
    };
  }
  if (!existsSync(REAL_SERVER)) {
    throw new Error(`${REAL_SERVER} not found: the real server is not built (run npm run build once src/main.ts exists)`);
  }
  const shards = name === 'shards1' ? 1 : 2;
  const dir = mkdtempSync(join(tmpdir(), 'ocs-bench-'));
  const configFile = join(dir, 'config.yaml');
  writeFileSync(configFile, realServerConfig(shards, maxConnections));
  return {
    name,
    shards,
    argv: [...pin, process.execPath, REAL_SERVER, '--config', configFile],
    endpoint: '/ws',
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** The real server, tuned only as the benchmark needs: a free port, no per-connection rate limit. */
function realServerConfig(shards: number, maxConnections: number): string {
  return [
    'websocket:',
    `  server: { host: 127.0.0.1, port: 0, shards: ${shards}, max_connections: ${Math.max(10_000, maxConnections * 2)} }`,
    '  auth: { allow_anonymous: true }',
    '  limits: { messages_per_second: 0, connection_attempts_per_ip: 0, unauthenticated_per_ip: 0 }   # 0: no per-connection rate, no per-address limits (one host opens every connection)',
    '',
  ].join('\n');
}

// The real server's configuration as the load tester, the benchmarks and the tests run it, and
// the temporary YAML file that carries it: loopback, a free port (the "ready" line says which),
// anonymous `?user=` identities and no per-connection rate limit, plus what the caller sets.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';

export type ConfigTree = Record<string, unknown>;

/** The harness defaults with `extra` merged over them. */
export function harnessConfig(extra: ConfigTree = {}): ConfigTree {
  return deepMerge(
    {
      websocket: {
        server: { host: '127.0.0.1', port: 0 },
        auth: { allow_anonymous: true },
        // 0: no per-connection rate, no per-address limits (one host opens every connection)
        limits: { messages_per_second: 0, connection_attempts_per_ip: 0, unauthenticated_per_ip: 0, http_requests_per_ip: 0 },
      },
    },
    extra,
  );
}

export interface ConfigFile {
  file: string;
  /** Deletes the file and its temporary directory (with the store in it, unless the config named one). */
  remove(): void;
}

/**
 * Writes `config` as YAML into a new temporary directory. A config without store.data_dir gets
 * a store in that directory: a server the tests or the tools start never writes into the
 * checkout's ./data, which `npm start` and pm2 load.
 */
export function writeConfigFile(config: ConfigTree): ConfigFile {
  const dir = mkdtempSync(join(tmpdir(), 'ocs-config-'));
  const file = join(dir, 'config.yaml');
  const store = isTree(config.store) ? config.store : {};
  writeFileSync(file, stringify(store.data_dir === undefined ? deepMerge(config, { store: { data_dir: join(dir, 'data') } }) : config));
  return { file, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** `extra` merged into `base`, object by object; arrays and other values replace. */
export function deepMerge(base: ConfigTree, extra: ConfigTree): ConfigTree {
  const out: ConfigTree = { ...base };
  for (const [key, value] of Object.entries(extra)) {
    const current = out[key];
    out[key] = isTree(value) && isTree(current) ? deepMerge(current, value) : value;
  }
  return out;
}

function isTree(value: unknown): value is ConfigTree {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

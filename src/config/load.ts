/**
 * Loads the configuration once at start-up: embedded defaults, then the YAML file, then
 * environment overrides; validates the result against the schema and freezes it.
 * Every failure is an OcsError('E_CONFIG') whose message is one line naming the bad key.
 */
import { Buffer } from 'node:buffer';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import type { ZodIssue } from 'zod';
import { OcsError } from '../protocol/errors.js';
import { cpuBudget, shardsFor, type CpuBudget } from '../util/cpus.js';
import { ConfigProblem } from './problem.js';
import { configSchema, type Config } from './schema.js';
import { checkTlsFiles } from './tls-files.js';

export const DEFAULT_CONFIG_PATH = fileURLToPath(new URL('../../../config/performance_config.yaml', import.meta.url));

type EnvKind = 'string' | 'int' | 'bool' | 'bool-or-auto';
/** Environment variable → config path and how to parse its value. */
export const ENV_OVERRIDES: ReadonlyArray<readonly [string, string, EnvKind]> = [
  ['WEBSOCKET_HOST', 'websocket.server.host', 'string'],
  ['WEBSOCKET_PORT', 'websocket.server.port', 'int'],
  ['WEBSOCKET_SHARDS', 'websocket.server.shards', 'int'],
  ['WEBSOCKET_MAX_CONNECTIONS', 'websocket.server.max_connections', 'int'],
  ['WEBSOCKET_MAX_PAYLOAD', 'websocket.server.max_payload', 'int'],
  ['WEBSOCKET_ENABLE_COMPRESSION', 'websocket.performance.enable_compression', 'bool'],
  ['WEBSOCKET_AUTH_SECRET', 'websocket.auth.secret', 'string'],
  ['WEBSOCKET_ALLOW_ANONYMOUS', 'websocket.auth.allow_anonymous', 'bool-or-auto'],
  ['WEBSOCKET_FORCE_ANONYMOUS', 'websocket.auth.force_anonymous_in_production', 'bool'],
  ['WEBSOCKET_RATE_LIMIT', 'websocket.limits.messages_per_second', 'int'],
  ['WEBSOCKET_LOG_LEVEL', 'logging.level', 'string'],
  ['WEBSOCKET_DATA_DIR', 'store.data_dir', 'string'],
  ['WEBSOCKET_ADMIN_TOKEN', 'websocket.admin.token', 'string'],
  ['WEBSOCKET_MONITORING_TOKEN', 'websocket.monitoring.token', 'string'],
  ['WEBSOCKET_REDIS_URL', 'cluster.redis_url', 'string'],
  ['WEBSOCKET_TLS_CERT_FILE', 'websocket.server.tls.cert_file', 'string'],
  ['WEBSOCKET_TLS_KEY_FILE', 'websocket.server.tls.key_file', 'string'],
  ['WEBSOCKET_TLS_PASSPHRASE', 'websocket.server.tls.passphrase', 'string'],
];

export interface LoadOptions {
  /** A file named by the user (--config): it must exist. Without it the default file is read if present. */
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** Settings applied over the file and the environment (embedding code, tests). */
  overrides?: Record<string, unknown>;
  /** The CPUs the process may use (tests); default: this process's affinity and cgroup quota. */
  cpus?: CpuBudget;
}

export interface LoadedConfig {
  config: Readonly<Config>;
  /** The file read, or null when running on the embedded defaults. */
  source: string | null;
  /** Shard count after resolving 0 ("one per CPU the process may use") and enable_connection_pooling. */
  shards: number;
  /** The CPUs the process may use, which `shards: 0` follows. */
  cpus: CpuBudget;
}

export function loadConfig(options: LoadOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const source = options.file ?? (existsSync(DEFAULT_CONFIG_PATH) ? DEFAULT_CONFIG_PATH : null);
  const raw = source === null ? {} : readYaml(source);
  /** Which keys the environment set, by dotted path: a bad value is blamed on its variable, not on the file. */
  const fromEnv = new Map<string, string>();
  for (const [name, path, kind] of ENV_OVERRIDES) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    setPath(raw, path, parseEnv(name, value, kind));
    fromEnv.set(path, name);
  }
  if (options.overrides) mergeInto(raw, options.overrides);
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const variable = fromEnv.get(issue.path.join('.'));
    throw new OcsError('E_CONFIG', describeIssue(issue, variable === undefined ? (source === null ? null : `in ${source}`) : `from ${variable}`));
  }
  const config = result.data;
  const anonymousAsked = (raw.websocket as { auth?: { allow_anonymous?: unknown } } | undefined)?.auth?.allow_anonymous;
  try {
    checkConsistency(config, env, anonymousAsked === undefined || anonymousAsked === 'auto');
    checkTlsFiles(config.websocket.server.tls);
  } catch (err) {
    const variables = err instanceof ConfigProblem ? err.keys.flatMap((key) => fromEnv.get(key) ?? []) : [];
    throw variables.length === 0 ? err : new OcsError('E_CONFIG', `${(err as Error).message} (from ${variables.join(', ')})`);
  }
  const cpus = options.cpus ?? cpuBudget();
  const shards = !config.websocket.performance.enable_connection_pooling ? 1 : config.websocket.server.shards || shardsFor(cpus);
  return { config: deepFreeze(config), source, shards, cpus };
}

function readYaml(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new OcsError('E_CONFIG', `config: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new OcsError('E_CONFIG', `config: ${file} is not valid YAML: ${String((err as Error).message).split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new OcsError('E_CONFIG', `config: ${file} must hold a mapping at the top level`);
  return doc as Record<string, unknown>;
}

function parseEnv(name: string, value: string, kind: EnvKind): unknown {
  if (kind === 'string') return value;
  if (kind === 'int') {
    if (!/^\d+$/.test(value)) throw new OcsError('E_CONFIG', `config: ${name}=${JSON.stringify(value)} is not a non-negative integer`);
    return Number(value);
  }
  if (kind === 'bool-or-auto' && /^auto$/i.test(value)) return 'auto';
  if (/^(true|1|yes)$/i.test(value)) return true;
  if (/^(false|0|no)$/i.test(value)) return false;
  throw new OcsError('E_CONFIG', `config: ${name}=${JSON.stringify(value)} is not a boolean (true/false${kind === 'bool-or-auto' ? '/auto' : ''})`);
}

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.');
  let node = target;
  for (const key of keys.slice(0, -1)) {
    const next = node[key];
    if (next === undefined || next === null) node = node[key] = {};
    else if (typeof next === 'object' && !Array.isArray(next)) node = next as Record<string, unknown>;
    else return; // the file has a wrong type here; the schema will name it
  }
  node[keys[keys.length - 1]!] = value;
}

function mergeInto(target: Record<string, unknown>, source: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(source)) {
    const existing = Object.hasOwn(target, key) ? target[key] : undefined;
    if (isPlainObject(value) && isPlainObject(existing)) mergeInto(existing, value);
    // Defined, not assigned: keys are names too (delivery.weights), and `target.__proto__ = x` would set the prototype.
    else Object.defineProperty(target, key, { value: isPlainObject(value) ? structuredClone(value) : value, enumerable: true, writable: true, configurable: true });
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** `origin`: where the value came from ("in FILE", "from VARIABLE"), or null for the defaults. */
function describeIssue(issue: ZodIssue, origin: string | null): string {
  const where = origin === null ? '' : ` (${origin})`;
  if (issue.code === 'unrecognized_keys') {
    const key = [...issue.path, issue.keys[0]].join('.');
    return `config: unknown key ${key}${where}`;
  }
  return `config: ${issue.path.join('.')}: ${issue.message}${where}`;
}

/** An HS256 key shorter than its hash (RFC 7518 3.2) is guessed offline from one token. */
export const MIN_SECRET_BYTES = 32;
export const shortSecret = (secret: string): boolean => Buffer.byteLength(secret) < MIN_SECRET_BYTES;

/**
 * `anonymousAuto`: allow_anonymous was left to `auto`. With NODE_ENV=production and no secret,
 * that is a server on a fresh machine (`pm2 start ecosystem.config.cjs` before the secret is
 * set): it starts with anonymous mode off and no way to check a token, so every client is
 * refused until a secret is set (the log says so at start: authMode 'closed'), rather than
 * exit and have its supervisor restart it again and again.
 */
function checkConsistency(config: Config, env: NodeJS.ProcessEnv, anonymousAuto: boolean): void {
  const { server, auth } = config.websocket;
  if (auth.allow_anonymous && env.NODE_ENV === 'production' && !auth.force_anonymous_in_production) {
    if (anonymousAuto) {
      (auth as { allow_anonymous: boolean }).allow_anonymous = false;
    } else {
      throw new ConfigProblem(['websocket.auth.allow_anonymous', 'websocket.auth.force_anonymous_in_production'], 'websocket.auth.allow_anonymous is true with NODE_ENV=production; set it to auto or false, or force it with websocket.auth.force_anonymous_in_production: true');
    }
  } else if (!auth.allow_anonymous && auth.secret === '') {
    throw new ConfigProblem(['websocket.auth.secret', 'websocket.auth.allow_anonymous'], 'websocket.auth.secret is empty and allow_anonymous is false: no client could connect');
  }
  if (auth.secret !== '' && shortSecret(auth.secret) && env.NODE_ENV === 'production') {
    throw new ConfigProblem(['websocket.auth.secret'], `websocket.auth.secret has ${Buffer.byteLength(auth.secret)} bytes with NODE_ENV=production: HS256 needs at least ${MIN_SECRET_BYTES} (RFC 7518), or one token lets anyone guess it and sign as any user (openssl rand -base64 32 makes one)`);
  }
  // A group frame is max_payload plus the envelope, and a ring holds records of at most half its size.
  if (config.websocket.performance.ring_bytes < 4 * server.max_payload) {
    throw new ConfigProblem(['websocket.server.max_payload'], 'websocket.performance.ring_bytes must be at least 4 x websocket.server.max_payload, so that any message fits a ring');
  }
  // The export file and the `stats` lines are the metrics' overview: without them there is none.
  const { monitoring } = config.websocket;
  if (!monitoring.enable_metrics_collection && monitoring.export_file !== '') {
    throw new ConfigProblem(['websocket.monitoring.export_file', 'websocket.monitoring.enable_metrics_collection'], 'websocket.monitoring.export_file needs enable_metrics_collection: true (the overview it appends is made of the metrics); it would stay empty');
  }
  if (server.drain_window + 5 > server.shutdown_timeout) {
    throw new ConfigProblem([], 'websocket.server.shutdown_timeout must be at least drain_window + 5 seconds (the drain, then the close handshakes)');
  }
  // The shard's sweep judges idleness every backpressure_check_interval (uWS's own timeout,
  // which counted in 4-second steps and needed at least 8, is off).
  if (server.idle_timeout > 0 && server.idle_timeout < 1) {
    throw new ConfigProblem([], 'websocket.server.idle_timeout must be 0 (off) or at least 1 second');
  }
  if (server.ping_interval > 0 && server.idle_timeout > 0 && server.ping_interval >= server.idle_timeout) {
    throw new ConfigProblem([], 'websocket.server.ping_interval must be shorter than idle_timeout, or live clients would time out');
  }
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

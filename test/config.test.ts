import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parse } from 'yaml';
import { DEFAULT_CONFIG_PATH, loadConfig } from '../src/config/load.js';
import { cpuBudget, shardsFor } from '../src/util/cpus.js';
import { configSchema } from '../src/config/schema.js';
import { connect } from './helpers/client.js';
import { runMain, startProcess, testConfig, writeConfig } from './helpers/server.js';

function keyPaths(value: unknown, prefix = ''): string[] {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return [prefix];
  return Object.entries(value).flatMap(([key, child]) => keyPaths(child, prefix ? `${prefix}.${key}` : key));
}

describe('configuration', () => {
  test('the shipped YAML documents every key, with the built-in defaults as values', () => {
    const shipped = parse(readFileSync(DEFAULT_CONFIG_PATH, 'utf8')) as unknown;
    const defaults = configSchema.parse({});
    assert.deepEqual(keyPaths(shipped).sort(), keyPaths(defaults).sort());
    assert.deepEqual(configSchema.parse(shipped), defaults);
    const text = readFileSync(DEFAULT_CONFIG_PATH, 'utf8');
    for (const line of text.split('\n')) {
      if (/^\s+\w+: \S/.test(line)) assert.match(line, /#/, `undocumented key: ${line.trim()}`);
    }
  });

  test("it holds every key of the seed document's example", () => {
    const keys = keyPaths(parse(readFileSync(DEFAULT_CONFIG_PATH, 'utf8')));
    for (const key of [
      'websocket.server.max_connections',
      'websocket.server.ping_interval',
      'websocket.performance.enable_compression',
      'websocket.performance.enable_connection_pooling',
      'websocket.performance.batch_size',
      'websocket.monitoring.enable_metrics_collection',
      'websocket.monitoring.metrics_collection_interval',
    ]) {
      assert.ok(keys.includes(key), key);
    }
  });

  test('without a file the embedded defaults apply: port 8765, one shard per CPU it may use, anonymous allowed', () => {
    const { config, shards, source } = loadConfig({ file: writeConfig({}), env: {} });
    assert.ok(source);
    assert.equal(config.websocket.server.port, 8765);
    assert.equal(shards, shardsFor(cpuBudget()));
    assert.equal(config.websocket.auth.allow_anonymous, true);
    assert.ok(Object.isFrozen(config.websocket.server));
  });

  test('environment variables override the file', () => {
    const file = writeConfig({ websocket: { server: { port: 1000 } } });
    const { config, shards } = loadConfig({
      file,
      env: {
        WEBSOCKET_HOST: '127.0.0.2',
        WEBSOCKET_PORT: '9001',
        WEBSOCKET_SHARDS: '3',
        WEBSOCKET_MAX_CONNECTIONS: '123',
        WEBSOCKET_ENABLE_COMPRESSION: 'false',
        WEBSOCKET_AUTH_SECRET: 's3cret',
        WEBSOCKET_ALLOW_ANONYMOUS: 'false',
      },
    });
    assert.equal(config.websocket.server.host, '127.0.0.2');
    assert.equal(config.websocket.server.port, 9001);
    assert.equal(shards, 3);
    assert.equal(config.websocket.server.max_connections, 123);
    assert.equal(config.websocket.performance.enable_compression, false);
    assert.equal(config.websocket.auth.secret, 's3cret');
    assert.equal(config.websocket.auth.allow_anonymous, false);
  });

  test('a bad environment value names the variable', () => {
    assert.throws(() => loadConfig({ file: writeConfig({}), env: { WEBSOCKET_PORT: 'eighty' } }), /WEBSOCKET_PORT="eighty" is not a non-negative integer/);
    assert.throws(() => loadConfig({ file: writeConfig({}), env: { WEBSOCKET_ALLOW_ANONYMOUS: 'maybe' } }), /WEBSOCKET_ALLOW_ANONYMOUS="maybe" is not a boolean/);
    assert.throws(() => loadConfig({ file: writeConfig({}), env: { WEBSOCKET_PORT: '99999' } }), /websocket\.server\.port: Number must be less than or equal to 65535 \(from WEBSOCKET_PORT\)$/, 'blamed on the variable, not the file');
  });

  test('a path with a query or a fragment is refused: uWS matches the path alone, so every upgrade would be a 404', () => {
    assert.throws(() => loadConfig({ file: writeConfig({ websocket: { server: { path: '/ws?x=1' } } }), env: {} }), /websocket\.server\.path: must be a path/);
  });

  test('enable_connection_pooling: false runs a single acceptor', () => {
    const { shards } = loadConfig({ file: writeConfig({ websocket: { server: { shards: 4 }, performance: { enable_connection_pooling: false } } }), env: {} });
    assert.equal(shards, 1);
  });

  test('an unknown key stops the server with exit 2 and one line naming it', async () => {
    const file = writeConfig({ websocket: { server: { max_connectionz: 5 } } });
    const { code, stderr } = await runMain(['--config', file]);
    assert.equal(code, 2);
    assert.equal(stderr.trim().split('\n').length, 1);
    assert.match(stderr, /unknown key websocket\.server\.max_connectionz/);
  });

  test('a wrong type stops the server with exit 2 and one line naming the key', async () => {
    const file = writeConfig({ websocket: { performance: { batch_size: 'fifty' } } });
    const { code, stderr } = await runMain(['--config', file]);
    assert.equal(code, 2);
    assert.equal(stderr.trim().split('\n').length, 1);
    assert.match(stderr, /websocket\.performance\.batch_size: Expected number, received string/);
  });

  test('a missing or unparsable --config file is named', async () => {
    const missing = await runMain(['--config', '/nonexistent/ocs.yaml']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /cannot read \/nonexistent\/ocs\.yaml: ENOENT/);
    const broken = writeConfig({});
    const { writeFileSync } = await import('node:fs');
    writeFileSync(broken, 'websocket: [unclosed');
    const unparsable = await runMain(['--config', broken]);
    assert.equal(unparsable.code, 2);
    assert.match(unparsable.stderr, /is not valid YAML/);
  });

  test('--check validates the config as a start would and exits: 0 with one line, or 2 naming the bad key', async () => {
    const good = await runMain(['--check', '--config', writeConfig({ websocket: { server: { port: 8123, shards: 2 } } })]);
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stdout, /^ocs-realtime: config OK \(.+\.yaml; 2 shards on port 8123\)\n$/);
    const bad = await runMain(['--check', '--config', writeConfig({ websocket: { server: { shards: -1 } } })]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /websocket\.server\.shards/);
    // The environment counts as it does at start.
    const badEnv = await runMain(['--check', '--config', writeConfig({})], { WEBSOCKET_PORT: 'eighty' });
    assert.equal(badEnv.code, 2);
    assert.match(badEnv.stderr, /WEBSOCKET_PORT/);
    // A store the server could not open: a reload onto it would take the server down.
    const file = join(mkdtempSync(join(tmpdir(), 'ocs-check-')), 'a-file');
    writeFileSync(file, 'not a directory');
    const badStore = await runMain(['--check', '--config', writeConfig({ store: { data_dir: file } })]);
    assert.equal(badStore.code, 2, badStore.stdout);
    assert.match(badStore.stderr, /store\.data_dir\): not a directory/);
  });

  test('--check finds the port as a start would: taken by another program, or by a server of another store, is 2 naming websocket.server.port; held by a server of the same store (a reload) passes', async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const held = (holder.address() as AddressInfo).port;
    const taken = await runMain(['--check', '--config', writeConfig(testConfig({ websocket: { server: { host: '127.0.0.1', port: held } } }))]);
    holder.close();
    assert.equal(taken.code, 2, taken.stdout);
    assert.match(taken.stderr, new RegExp(`websocket\\.server\\.port: port ${held} on 127\\.0\\.0\\.1 is taken by a process that is not an ocs-realtime server`));
    const config = testConfig({ websocket: { server: { host: '127.0.0.1', port: 0, shards: 1 } } });
    const server = await startProcess(config);
    try {
      const same = await runMain(['--check', '--config', writeConfig({ ...config, websocket: { server: { host: '127.0.0.1', port: server.port, shards: 1 } } })]);
      assert.equal(same.code, 0, same.stderr);
      const other = await runMain(['--check', '--config', writeConfig(testConfig({ websocket: { server: { host: '127.0.0.1', port: server.port } } }))]);
      assert.equal(other.code, 2, other.stdout);
      assert.match(other.stderr, new RegExp(`port ${server.port} is served by process \\d+ \\(store `));
    } finally {
      await server.stop();
    }
  });

  test('a host this machine cannot listen on (not its address, no such name) is 2 naming websocket.server.host, at --check and at start: a reload onto it took the server down', async () => {
    for (const host of ['10.255.255.1', 'no-such-host.invalid', '0.0.0.0 ']) {
      for (const args of [['--check'], []]) {
        const refused = await runMain([...args, '--config', writeConfig(testConfig({ websocket: { server: { host, port: 0 } } }))]);
        assert.equal(refused.code, 2, `${host} ${args.join(' ')}: ${refused.stdout}`);
        assert.match(refused.stderr, /websocket\.server\.host ".+" cannot be listened on here \((EADDRNOTAVAIL|ENOTFOUND|EAI_AGAIN)\)/);
      }
    }
  });

  // A review guessed a one-byte secret from one token in 89 tries and signed as another user.
  test('an HS256 secret under 32 bytes is refused with NODE_ENV=production, naming the key, and warned of elsewhere', async () => {
    const file = writeConfig({ websocket: { server: { host: '127.0.0.1', port: 0 } } });
    assert.throws(() => loadConfig({ file, env: { NODE_ENV: 'production', WEBSOCKET_AUTH_SECRET: 'x'.repeat(31) } }), /websocket\.auth\.secret has 31 bytes with NODE_ENV=production: HS256 needs at least 32/);
    const server = await startProcess(testConfig({ websocket: { auth: { secret: 'short' } } }));
    try {
      assert.ok(server.logs.some((line) => line.level === 40 && /websocket\.auth\.secret has 5 bytes/.test(String(line.msg))), 'warned at start');
    } finally {
      assert.equal(await server.stop('SIGTERM'), 0);
    }
  });

  test('NODE_ENV=production never turns anonymous mode on by itself: without a secret the server starts closed and says so', async () => {
    const file = writeConfig({ websocket: { server: { host: '127.0.0.1', port: 0 } } });
    const production = { NODE_ENV: 'production' };
    assert.equal(loadConfig({ file, env: production }).config.websocket.auth.allow_anonymous, false);
    assert.equal(loadConfig({ file, env: { ...production, WEBSOCKET_ALLOW_ANONYMOUS: 'auto' } }).config.websocket.auth.allow_anonymous, false);
    // Asked for explicitly, it is refused unless forced.
    assert.throws(() => loadConfig({ file, env: { ...production, WEBSOCKET_ALLOW_ANONYMOUS: 'true' } }), /allow_anonymous is true with NODE_ENV=production/);
    assert.equal(loadConfig({ file, env: { ...production, WEBSOCKET_ALLOW_ANONYMOUS: 'true', WEBSOCKET_FORCE_ANONYMOUS: 'true' } }).config.websocket.auth.allow_anonymous, true);
    assert.doesNotThrow(() => loadConfig({ file, env: { ...production, WEBSOCKET_ALLOW_ANONYMOUS: 'false', WEBSOCKET_AUTH_SECRET: 'k'.repeat(32) } }));
    // The process a fresh machine runs (pm2: NODE_ENV=production, no secret yet) starts and refuses every client, saying why.
    const server = await startProcess(testConfig({ websocket: { auth: { allow_anonymous: 'auto' } } }), production);
    try {
      const ready = server.logs.find((line) => line.msg === 'ready')!;
      assert.equal(ready.authMode, 'closed');
      const closed = server.logs.find((line) => line.authMode === 'closed' && line.level === 50);
      assert.match(String(closed?.msg), /every client is refused with 401 until a secret is set.*WEBSOCKET_AUTH_SECRET/);
      const refused = await connect(server.port, { query: 'user=alice' }).then(
        () => 'connected',
        (err: Error) => err.message,
      );
      assert.match(refused, /401/);
      // A client without credentials, which would send an `auth` frame (as the SDK does), too: none holds a place.
      const bare = await connect(server.port).then(
        () => 'connected',
        (err: Error) => err.message,
      );
      assert.match(bare, /401/);
    } finally {
      assert.equal(await server.stop('SIGTERM'), 0);
    }
  });

  test('setting a secret turns anonymous mode off unless it is enabled explicitly', () => {
    const env = {};
    const anonymous = (auth: Record<string, unknown>, environment: NodeJS.ProcessEnv = env): boolean =>
      loadConfig({ file: writeConfig({ websocket: { auth } }), env: environment }).config.websocket.auth.allow_anonymous;
    assert.equal(anonymous({}), true);
    assert.equal(anonymous({ secret: 'k' }), false);
    assert.equal(anonymous({}, { WEBSOCKET_AUTH_SECRET: 'k' }), false);
    assert.equal(anonymous({ secret: 'k', allow_anonymous: true }), true);
    assert.equal(anonymous({ secret: 'k' }, { WEBSOCKET_ALLOW_ANONYMOUS: 'true' }), true);
    assert.equal(anonymous({ allow_anonymous: true }, { WEBSOCKET_ALLOW_ANONYMOUS: 'auto', WEBSOCKET_AUTH_SECRET: 'k' }), false);
    assert.throws(() => anonymous({}, { WEBSOCKET_ALLOW_ANONYMOUS: 'maybe' }), /WEBSOCKET_ALLOW_ANONYMOUS="maybe" is not a boolean \(true\/false\/auto\)/);
  });

  test("the server refuses to run on uWebSockets.js's slow JavaScript fallback", async () => {
    // UWS_USE_FALLBACK makes the mirror skip its native binary, as a failed load would.
    const { code, stderr } = await runMain(['--config', writeConfig({ websocket: { server: { port: 0 } } })], { UWS_USE_FALLBACK: '1' });
    assert.equal(code, 1);
    assert.equal(stderr.trim().split('\n').length, 1);
    assert.match(stderr, /native binary did not load .* refusing to run on the slow JavaScript fallback/);
  });

  test('a delay a timer cannot wait (over a day for timers, Infinity anywhere) is refused naming the key', () => {
    const env = {};
    assert.throws(() => loadConfig({ file: writeConfig({ websocket: { server: { shutdown_timeout: 3_000_000 } } }), env }), /websocket\.server\.shutdown_timeout: Number must be less than or equal to 86400/);
    assert.throws(() => loadConfig({ file: writeConfig({ websocket: { server: { backpressure_check_interval: 3_000_000 } } }), env }), /backpressure_check_interval/);
    assert.throws(() => loadConfig({ file: writeConfig({ websocket: { server: { idle_timeout: Infinity } } }), env }), /websocket\.server\.idle_timeout/);
    assert.throws(() => loadConfig({ file: writeConfig({ websocket: { delivery: { ttl: Infinity } } }), env }), /websocket\.delivery\.ttl/);
    assert.equal(loadConfig({ file: writeConfig({ websocket: { delivery: { ttl: 90 * 86_400 } } }), env }).config.websocket.delivery.ttl, 90 * 86_400, 'a ttl of 90 days is no timer: allowed');
  });

  test('no number key takes Infinity (YAML .inf): each is refused naming itself', () => {
    // A rate of Infinity made 0 * Infinity = NaN in the per-address limiter, whose entry was then never forgotten.
    const { config } = loadConfig({ env: {} });
    const numberKeys = keyPaths(config).filter((path) => typeof path.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown>)[k], config) === 'number');
    assert.ok(numberKeys.length > 50, `found ${numberKeys.length} number keys`);
    for (const path of numberKeys) {
      const overrides: Record<string, unknown> = {};
      const keys = path.split('.');
      keys.reduce<Record<string, unknown>>((at, key, i) => (at[key] = i === keys.length - 1 ? Infinity : {}) as Record<string, unknown>, overrides);
      assert.throws(() => loadConfig({ env: {}, overrides }), (err: Error) => err.message.includes(path), `${path}: Infinity accepted`);
    }
    assert.throws(() => loadConfig({ file: writeConfig({ websocket: { limits: { connection_attempts_per_ip: Infinity } } }), env: {} }), /websocket\.limits\.connection_attempts_per_ip/);
  });

  test('max_connections stays a count the kernel can take as a file limit (tune-sysctl writes it)', () => {
    assert.throws(() => loadConfig({ env: { WEBSOCKET_MAX_CONNECTIONS: '99999999999999999999999' } }), /max_connections.*WEBSOCKET_MAX_CONNECTIONS/);
    assert.equal(loadConfig({ env: { WEBSOCKET_MAX_CONNECTIONS: '10000000' } }).config.websocket.server.max_connections, 10_000_000);
  });

  test('settings that cannot work together are refused', () => {
    const env = {};
    assert.throws(() => loadConfig({ file: writeConfig({ websocket: { auth: { allow_anonymous: false } } }), env }), /secret is empty and allow_anonymous is false/);
    assert.throws(() => loadConfig({ file: writeConfig({ websocket: { server: { ping_interval: 30, idle_timeout: 20 } } }), env }), /ping_interval must be shorter than idle_timeout/);
    assert.throws(() => loadConfig({ file: writeConfig({ websocket: { server: { idle_timeout: 0.5 } } }), env }), /idle_timeout must be 0 \(off\) or at least 1 second/);
    assert.throws(() => loadConfig({ file: writeConfig({ websocket: { server: { drain_window: 6 } } }), env }), /shutdown_timeout must be at least drain_window \+ 5 seconds/);
    assert.throws(() => loadConfig({ file: writeConfig({ websocket: { monitoring: { enable_metrics_collection: false, export_file: '/tmp/overview.jsonl' } } }), env }), /export_file needs enable_metrics_collection: true/);
    assert.throws(
      () => loadConfig({ file: writeConfig({ websocket: { server: { max_payload: 1048576 }, performance: { ring_bytes: 1048576 } } }), env }),
      /ring_bytes must be at least 4 x websocket.server.max_payload/,
    );
  });

  test('a check across keys names the environment variable that set a value, as the schema does', () => {
    const file = writeConfig({});
    assert.throws(() => loadConfig({ file, env: { NODE_ENV: 'production', WEBSOCKET_ALLOW_ANONYMOUS: 'true' } }), /allow_anonymous is true .* \(from WEBSOCKET_ALLOW_ANONYMOUS\)$/);
    assert.throws(() => loadConfig({ file, env: { WEBSOCKET_ALLOW_ANONYMOUS: 'false' } }), /secret is empty .* \(from WEBSOCKET_ALLOW_ANONYMOUS\)$/);
    assert.throws(() => loadConfig({ file, env: { WEBSOCKET_MAX_PAYLOAD: String(64 * 1024 * 1024) } }), /ring_bytes must be .* \(from WEBSOCKET_MAX_PAYLOAD\)$/);
    assert.throws(
      () => loadConfig({ file, env: { WEBSOCKET_TLS_CERT_FILE: '/nonexistent/cert.pem', WEBSOCKET_TLS_KEY_FILE: '/nonexistent/key.pem' } }),
      /websocket\.server\.tls\.cert_file: cannot read \/nonexistent\/cert\.pem: ENOENT \(from WEBSOCKET_TLS_CERT_FILE\)$/,
    );
    assert.throws(() => loadConfig({ file, env: { WEBSOCKET_TLS_KEY_FILE: '/nonexistent/key.pem' } }), /cert_file and key_file go together .* \(from WEBSOCKET_TLS_KEY_FILE\)$/);
  });

  test('a redis_url that is not a URL is refused naming the key, never showing the value (it may hold a password)', () => {
    const file = writeConfig({});
    for (const url of ['redis://:s3cret@host:bad', 'redis://:s3cret@[::1', 'redis://:s3cret@host:99999', 'redis://:s3cret@host:6379/db', 'rediss://:s3cret@/0']) {
      assert.throws(
        () => loadConfig({ file, env: { WEBSOCKET_REDIS_URL: url } }),
        (err: Error) => /^config: cluster\.redis_url: must be redis:\/\/.* \(from WEBSOCKET_REDIS_URL\)$/.test(err.message) && !err.message.includes('s3cret'),
        url,
      );
    }
    for (const url of ['redis://127.0.0.1:6379', 'redis://:s3cret@10.0.0.9:6380/2', 'rediss://cache.example:6380/', 'redis://[::1]:6379']) {
      assert.equal(loadConfig({ file, env: { WEBSOCKET_REDIS_URL: url } }).config.cluster.redis_url, url);
    }
  });

  test('delivery.weights and group_strategies are Maps keyed by any name, __proto__ and constructor included; a bad value names its key', () => {
    const file = writeConfig({});
    writeFileSync(file, 'websocket:\n  delivery:\n    weights: {__proto__: 3, constructor: 2}\n    group_strategies: {__proto__: weighted}\n');
    const { config } = loadConfig({ file, env: {}, overrides: { websocket: { delivery: { weights: JSON.parse('{"toString": 4}') as unknown } } } });
    assert.deepEqual([...config.websocket.delivery.weights], [['__proto__', 3], ['constructor', 2], ['toString', 4]]);
    assert.deepEqual([...config.websocket.delivery.group_strategies], [['__proto__', 'weighted']]);
    assert.throws(() => loadConfig({ file: writeConfig({ websocket: { delivery: { weights: { ann: -1 } } } }), env: {} }), /websocket\.delivery\.weights\.ann: Number must be greater than 0/);
    // Weights near 1e308 overflowed the weighted pick's sums (issue 8, defect 10).
    assert.throws(() => loadConfig({ file: writeConfig({ websocket: { delivery: { weights: { bo: 1e308 } } } }), env: {} }), /websocket\.delivery\.weights\.bo: Number must be less than or equal to 1000000/);
    assert.throws(() => loadConfig({ file: writeConfig({ websocket: { delivery: { group_strategies: { ops: 'fastest' } } } }), env: {} }), /websocket\.delivery\.group_strategies\.ops: Invalid enum value/);
  });
});

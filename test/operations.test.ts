/**
 * What an operator relies on besides the server itself: a backup of the store taken while it
 * runs, the README's configuration tables matching the schema, a build and tools that never
 * take dist/ away from a running server, tests and tools that never write into the checkout's
 * ./data, and a lock file that a fresh `npm install` leaves as it is.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { configKeys, renderConfigTables, replaceBetweenMarkers, TABLE_END, TABLE_START } from '../src/config/docs.js';
import { DEFAULT_CONFIG_PATH } from '../src/config/load.js';
import { writeConfigFile } from '../tools/lib/server-config.js';
import { member } from './helpers/client.js';
import { nextMsgs } from './helpers/messaging.js';
import { runCommand, startProcess, tempDataDir, testConfig, writeConfig } from './helpers/server.js';
import { mountSmallDisk } from './helpers/small-disk.js';
import { backupStore } from '../src/store/backup.js';
import { MessageStore } from '../src/store/store.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BACKUP = join(ROOT, 'dist', 'scripts', 'backup.js');

describe('npm run backup', () => {
  test('copies the store while the server runs; a server started on the copy delivers what was stored', async () => {
    const config = testConfig({ store: { data_dir: tempDataDir() } });
    const server = await startProcess(config);
    const target = join(mkdtempSync(join(tmpdir(), 'ocs-backup-')), 'copy');
    try {
      const sender = await member(server.port, 'sender');
      for (let n = 0; n < 3; n++) {
        sender.send({ op: 'send', to: 'bob', data: { n }, ref: String(n) });
        await sender.next((f) => f.op === 'ack' && f.ref === String(n));
      }
      sender.close();
      const file = writeConfig(config);
      const made = await runCommand(process.execPath, [BACKUP, target, '--config', file], {}, 30_000);
      assert.equal(made.code, 0, made.stderr);
      const result = JSON.parse(made.stdout) as { file: string; bytes: number };
      assert.equal(result.file, join(target, 'data.mdb'));
      assert.ok(result.bytes > 0);
      const again = await runCommand(process.execPath, [BACKUP, target, '--config', file], {}, 30_000);
      assert.equal(again.code, 1, 'a directory that holds something is not overwritten');
      assert.match(again.stderr, /is not empty/);
      const usage = await runCommand(process.execPath, [BACKUP], {}, 30_000);
      assert.equal(usage.code, 2);
    } finally {
      assert.equal(await server.stop('SIGTERM'), 0);
    }
    const restored = await startProcess(testConfig({ store: { data_dir: target } }));
    try {
      const bob = await member(restored.port, 'bob');
      assert.equal(bob.welcome.pending, 3);
      assert.deepEqual((await nextMsgs(bob, 3)).map((m) => (m.data as { n: number }).n), [0, 1, 2]);
      bob.close();
    } finally {
      await restored.stop('SIGTERM');
    }
  });
});

describe('backupStore into a directory without room for the copy', () => {
  test('fails, saying so, and leaves no truncated data.mdb to be taken for a backup', async (t) => {
    const small = mountSmallDisk('1m');
    if (typeof small === 'string') return t.skip(small);
    const dataDir = tempDataDir();
    const store = await MessageStore.open(dataDir, 'none');
    try {
      for (let n = 0; n < 40; n++) await store.put({ id: `m${n}`, seq: n, target: 'u:bob', from: 'alice', group: null, data: JSON.stringify('x'.repeat(64 * 1024)), pri: 1, ts: n, at: 0, attempts: 0, strategy: null });
    } finally {
      await store.close();
    }
    try {
      const target = join(small.dir, 'copy');
      await assert.rejects(backupStore(dataDir, target), /backup: copying into .* failed, the partial copy removed/);
      assert.deepEqual(readdirSync(target), [], 'nothing left: a retry may use the directory');
    } finally {
      small.unmount();
    }
  });
});

describe('backupStore', () => {
  test("leaves out the live server's lease and standby records: a server started on the copy takes it at once", async () => {
    const dataDir = tempDataDir();
    const store = await MessageStore.open(dataDir, 'none');
    const target = join(mkdtempSync(join(tmpdir(), 'ocs-backup-')), 'copy');
    try {
      await store.put({ id: 'm0', seq: 0, target: 'u:bob', from: 'alice', group: null, data: '"kept"', pri: 1, ts: 0, at: 0, attempts: 0, strategy: null });
      const lease = store.lease('holder', 15_000);
      await lease.acquire();
      assert.equal(lease.read().state, 'mine');
      await store.lease('standing-by', 15_000).standBy();
      await backupStore(dataDir, target);
    } finally {
      await store.close();
    }
    const copy = await MessageStore.open(target, 'none');
    try {
      assert.equal(copy.lease('restored', 15_000).read().state, 'free');
      assert.deepEqual(copy.lease('restored', 15_000).standbys(), []);
      assert.deepEqual([...copy.loadQueue()].map((m) => m.id), ['m0']);
    } finally {
      await copy.close();
    }
  });

  test("refuses a target inside the store's directory", async () => {
    const dataDir = tempDataDir();
    await (await MessageStore.open(dataDir, 'none')).close();
    await assert.rejects(backupStore(dataDir, join(dataDir, 'copy')), /inside the store's directory/);
    assert.equal(existsSync(join(dataDir, 'copy')), false);
  });

  test('two backups into one new directory: one copy is made and kept, the other fails saying why', async () => {
    const dataDir = tempDataDir();
    const store = await MessageStore.open(dataDir, 'none');
    await store.close();
    for (let round = 0; round < 5; round++) {
      const target = join(mkdtempSync(join(tmpdir(), 'ocs-backup-')), 'copy');
      const outcomes = await Promise.allSettled([backupStore(dataDir, target), backupStore(dataDir, target)]);
      assert.deepEqual(outcomes.map((o) => o.status).sort(), ['fulfilled', 'rejected'], `round ${round}`);
      const failed = outcomes.find((o) => o.status === 'rejected') as PromiseRejectedResult;
      assert.match(String(failed.reason), /written by another backup meanwhile|is not empty/);
      assert.deepEqual(readdirSync(target), ['data.mdb'], 'the winner\'s copy stays, and nothing else');
    }
  });
});

describe('the configuration reference in README.md', () => {
  test('is what npm run config-docs writes from the schema and the shipped YAML', async () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const yamlText = readFileSync(DEFAULT_CONFIG_PATH, 'utf8');
    assert.equal(readme, replaceBetweenMarkers(readme, renderConfigTables(yamlText)), 'README.md is stale: run npm run config-docs');
    const check = await runCommand(process.execPath, [join(ROOT, 'dist', 'scripts', 'config-docs.js'), '--check'], {}, 30_000);
    assert.equal(check.code, 0, check.stderr);
    assert.ok(readme.indexOf(TABLE_START) < readme.indexOf(TABLE_END));
  });

  test('names every key with its type, default and environment variable, and says what it does', () => {
    const yamlText = readFileSync(DEFAULT_CONFIG_PATH, 'utf8');
    const keys = configKeys(yamlText);
    const port = keys.find((key) => key.path === 'websocket.server.port')!;
    assert.deepEqual([port.type, port.default, port.env], ['integer ≥ 0, ≤ 65535', '8765', 'WEBSOCKET_PORT']);
    assert.equal(keys.find((key) => key.path === 'websocket.auth.allow_anonymous')!.default, 'auto');
    assert.equal(keys.find((key) => key.path === 'store.data_dir')!.env, 'WEBSOCKET_DATA_DIR');
    for (const key of keys) assert.notEqual(key.meaning, '', key.path);
    // A key the YAML does not explain cannot get into the README.
    const shipped = parse(yamlText) as { logging: Record<string, unknown> };
    assert.ok(shipped.logging.level);
    assert.throws(() => configKeys(yamlText.replace(/^(\s+level: info)\s+#.*$/m, '$1')), /no comment for logging\.level/);
  });
});

describe('the build and the tools beside a running server', () => {
  test('a build removes only the output of deleted sources, never the rest of dist/', async () => {
    const stale = join(ROOT, 'dist', 'src', 'no-such-module-any-more.js');
    const staleMap = `${stale}.map`;
    const staleTest = join(ROOT, 'dist', 'test', 'gone', 'old.test.js');
    mkdirSync(dirname(staleTest), { recursive: true });
    for (const file of [stale, staleMap, staleTest]) writeFileSync(file, '');
    const pruned = await runCommand(process.execPath, [join(ROOT, 'scripts', 'prune-dist.mjs')], {}, 30_000);
    assert.equal(pruned.code, 0, pruned.stderr);
    for (const file of [stale, staleMap, staleTest, dirname(staleTest)]) assert.equal(existsSync(file), false, file);
    for (const kept of ['dist/src/main.js', 'dist/workers/shard.js', 'dist/test/operations.test.js', 'dist/server.tsbuildinfo', 'dist/client/ocs-client.js']) assert.ok(existsSync(join(ROOT, kept)), kept);
  });

  test('no npm script empties dist/; the operator tools run the built files, building only when they are missing', () => {
    const { scripts } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    for (const [name, command] of Object.entries(scripts)) assert.doesNotMatch(command, /rm -rf|clean-dist|rimraf/, name);
    for (const tool of ['dlq', 'report', 'tune-sysctl', 'backup', 'config-docs']) {
      assert.match(scripts[tool]!, new RegExp(`^test -f dist/scripts/${tool}\\.js \\|\\| tsc -b; node dist/scripts/${tool}\\.js$`), tool);
    }
    assert.equal(scripts.prepare, 'npm run build --silent', '`npm install` builds the server pm2 runs');
  });

  test('a server the tests or the tools start without a data_dir gets a store in its own temp directory, never ./data', () => {
    const config = writeConfigFile({ websocket: { server: { port: 0 } } });
    const written = parse(readFileSync(config.file, 'utf8')) as { store: { data_dir: string } };
    assert.equal(written.store.data_dir, join(dirname(config.file), 'data'));
    config.remove();
    assert.equal(existsSync(config.file), false);
    const named = writeConfigFile({ store: { data_dir: '/somewhere/else' } });
    assert.equal((parse(readFileSync(named.file, 'utf8')) as { store: { data_dir: string } }).store.data_dir, '/somewhere/else');
    named.remove();
  });
});

describe('package-lock.json', () => {
  test('a fresh npm install leaves it as it is: written by the npm that Node 20 ships (no libc fields, which npm 10 drops)', () => {
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { lockfileVersion: number; packages: Record<string, Record<string, unknown>> };
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Record<string, Record<string, string>>;
    assert.equal(lock.lockfileVersion, 3);
    const withLibc = Object.entries(lock.packages).filter(([, entry]) => 'libc' in entry).map(([name]) => name);
    assert.deepEqual(withLibc, []);
    const root = lock.packages['']!;
    assert.deepEqual(root.dependencies, pkg.dependencies);
    assert.deepEqual(root.devDependencies, pkg.devDependencies);
  });
});

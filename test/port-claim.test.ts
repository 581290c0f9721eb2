/**
 * One port, one server (src/primary/port-claim.ts): SO_REUSEPORT lets a pm2 reload's two
 * processes share a port, and it let a second server with another store start there silently
 * and take half the clients. Now the second is refused at start, naming the first; a process on
 * the same store (a reload) still shares the port. Real processes on a fixed port.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig } from '../src/config/load.js';
import { chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { claimFile, claimPort, portIdentity } from '../src/primary/port-claim.js';
import { freePort, runMain, startProcess, tempDataDir, testConfig, writeConfig } from './helpers/server.js';

describe('one port, one server', () => {
  test('a second server with another store on a taken port exits with E_STARTUP naming the first; one on the same store shares it (a reload)', async () => {
    const port = await freePort();
    const store = tempDataDir();
    const config = (dataDir: string): Record<string, unknown> => testConfig({ websocket: { server: { port, host: '127.0.0.1' } }, store: { data_dir: dataDir } });
    const first = await startProcess(config(store));
    try {
      const other = await runMain(['--config', writeConfig(config(tempDataDir()))]);
      assert.equal(other.code, 1, other.stdout + other.stderr);
      assert.match(other.stdout, new RegExp(`port ${port} is served by process ${first.child.pid} \\(store [^)]+\\); this server \\(store [^)]+\\) would split its clients`));
      const reload = await startProcess(config(store));
      assert.equal(reload.logs.find((line) => line.msg === 'ready')?.ownsStore, false, 'the same store: it stands by, as in a pm2 reload');
      assert.equal(await reload.stop('SIGTERM'), 0);
    } finally {
      await first.stop('SIGTERM');
    }
    // Gone, the port is free for any store.
    const next = await startProcess(config(tempDataDir()));
    assert.equal(await next.stop('SIGTERM'), 0);
  });

  test('a claim is believed only from a file of this user, naming a live process, on this address', { skip: process.platform !== 'linux' && '/proc' }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'ocs-claims-'));
    // Process 1 is alive; its start time as /proc says.
    const stat = readFileSync('/proc/1/stat', 'utf8');
    const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
    const file = claimFile('127.0.0.1', 18000, dir);
    writeFileSync(file, JSON.stringify({ pid: 1, startTime, identity: 'store /elsewhere' }));
    assert.throws(() => claimPort('127.0.0.1', 18000, 'store /mine', dir), /port 18000 is served by process 1 \(store \/elsewhere\)/);
    claimPort('192.0.2.1', 18000, 'store /mine', dir)();
    if (process.getuid?.() === 0) {
      chownSync(file, 65534, 65534);
      claimPort('127.0.0.1', 18000, 'store /mine', dir)();
    }
    writeFileSync(claimFile('127.0.0.1', 18001, dir), JSON.stringify({ pid: 1, startTime: 'not its start', identity: 'store /elsewhere' }));
    claimPort('127.0.0.1', 18001, 'store /mine', dir)();
    rmSync(dir, { recursive: true, force: true });
  });

  test("a cluster node is known by its Redis and key prefix, never its password", () => {
    const { config } = loadConfig({ file: writeConfig({ cluster: { redis_url: 'redis://:s3cret@10.0.0.9:6380/2', key_prefix: 'chat:' } }), env: {} });
    assert.equal(portIdentity(config), 'cluster redis://10.0.0.9:6380/2 prefix "chat:"');
  });
});

/**
 * One port, one server (src/primary/port-claim.ts): SO_REUSEPORT lets a pm2 reload's two
 * processes share a port, and it let a second server with another store start there silently
 * and take half the clients. Now the second is refused at start, naming the first; a process on
 * the same store (a reload) still shares the port. Real processes on a fixed port.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig } from '../src/config/load.js';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chownSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { claimFile, claimPort, portIdentity } from '../src/primary/port-claim.js';
import { freePort, runMain, startInProcess, startProcess, tempDataDir, testConfig, writeConfig } from './helpers/server.js';

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

  // A review's aborted reloads: the claim named the new process alone, and once it was gone every start was refused as a foreign program's.
  test('a reload whose new process stops or dies before the old one leaves the port to the old one\'s store: the next reload shares it, another store is still refused', async () => {
    const port = await freePort();
    const store = tempDataDir();
    const config = (dataDir: string): Record<string, unknown> => testConfig({ websocket: { server: { port, host: '127.0.0.1' } }, store: { data_dir: dataDir } });
    const old = await startProcess(config(store));
    try {
      for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
        const aborted = await startProcess(config(store));
        await aborted.stop(signal);
        const other = await runMain(['--config', writeConfig(config(tempDataDir()))]);
        assert.equal(other.code, 1, other.stdout + other.stderr);
        assert.match(other.stdout, new RegExp(`port ${port} is served by process ${old.child.pid}`), `after a ${signal}`);
        const next = await startProcess(config(store));
        assert.equal(await next.stop('SIGTERM'), 0, `a reload after a ${signal}ed one starts: ${next.stderr()}`);
      }
    } finally {
      await old.stop('SIGTERM');
    }
  });

  test('a server started on port 0 claims the port it was given: another store is refused it, the same store shares it', async () => {
    const store = tempDataDir();
    const first = await startProcess(testConfig({ store: { data_dir: store } }));
    try {
      const other = await runMain(['--config', writeConfig(testConfig({ websocket: { server: { port: first.port } }, store: { data_dir: tempDataDir() } }))]);
      assert.equal(other.code, 1, other.stdout + other.stderr);
      assert.match(other.stdout, new RegExp(`port ${first.port} is served by process ${first.child.pid}`));
      const reload = await startProcess(testConfig({ websocket: { server: { port: first.port } }, store: { data_dir: store } }));
      assert.equal(await reload.stop('SIGTERM'), 0);
    } finally {
      await first.stop('SIGTERM');
    }
  });

  test('servers in one process (the embedding API) are held to the same rule: another store is refused, the same shares, and the claim stays until the last lets go', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ocs-claims-'));
    try {
      const port = await freePort();
      const file = claimFile(port, dir);
      const first = await claimPort('127.0.0.1', port, 'store /a', dir);
      await assert.rejects(claimPort('127.0.0.1', port, 'store /b', dir), (err: Error & { code?: string }) => err.code === 'E_STARTUP' && err.message.includes(`port ${port} is served by process ${process.pid} (store /a)`));
      const second = await claimPort('127.0.0.1', port, 'store /a', dir);
      second();
      second(); // twice: counted once
      assert.equal(JSON.parse(readFileSync(file, 'utf8')).identity, 'store /a', 'the first still holds it');
      await assert.rejects(claimPort('127.0.0.1', port, 'store /b', dir));
      first();
      assert.throws(() => readFileSync(file), /ENOENT/);
      (await claimPort('127.0.0.1', port, 'store /b', dir))();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('one server per store in one process (two open its LMDB twice and deadlocked): a second, at once or through a symlink, is refused; after the first has stopped, one starts', async () => {
    const store = tempDataDir();
    const alias = `${store}-alias`;
    symlinkSync(store, alias);
    const starts = await Promise.allSettled([startInProcess({ store: { data_dir: store } }), startInProcess({ store: { data_dir: alias } })]);
    const started = starts.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const refused = starts.flatMap((s) => (s.status === 'rejected' ? [s.reason as Error & { code?: string }] : []));
    assert.equal(started.length, 1);
    assert.equal(refused[0]?.code, 'E_STARTUP');
    assert.match(refused[0]!.message, /this process already runs a server on store .*: one server per store per process/);
    await started[0]!.close();
    const next = await startInProcess({ store: { data_dir: alias } });
    assert.equal(next.ownsStore, true);
    // Nor while one stops.
    const [, during] = await Promise.allSettled([next.close(), startInProcess({ store: { data_dir: store } })]);
    assert.equal(during.status, 'rejected');
    rmSync(alias);
  });

  test('a claim is believed only from a file of this user, naming a live process; it holds the port on every address', { skip: process.platform !== 'linux' && '/proc' }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ocs-claims-'));
    const port = await freePort();
    // Process 1 is alive; its start time as /proc says.
    const stat = readFileSync('/proc/1/stat', 'utf8');
    const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
    const file = claimFile(port, dir);
    writeFileSync(file, JSON.stringify({ pid: 1, startTime, identity: 'store /elsewhere' }));
    const served = new RegExp(`port ${port} is served by process 1 \\(store \\/elsewhere\\)`);
    // Another spelling of the address, or the wildcard, is the same port.
    for (const host of ['127.0.0.1', 'localhost', '0.0.0.0']) await assert.rejects(claimPort(host, port, 'store /mine', dir), served, host);
    if (process.getuid?.() === 0) {
      chownSync(file, 65534, 65534);
      (await claimPort('127.0.0.1', port, 'store /mine', dir))();
    }
    rmSync(file, { force: true });
    writeFileSync(file, JSON.stringify({ pid: 1, startTime: 'not its start', identity: 'store /elsewhere' }));
    const release = await claimPort('127.0.0.1', port, 'store /mine', dir);
    assert.equal(JSON.parse(readFileSync(file, 'utf8')).identity, 'store /mine', 'a dead process\'s claim is taken over');
    release();
    assert.throws(() => readFileSync(file), /ENOENT/, 'released');
    rmSync(dir, { recursive: true, force: true });
  });

  test('a port another program listens on with SO_REUSEPORT (which the shards would share) stops the start naming the port', async () => {
    const port = await freePort();
    // A bare uWS listener in another process: uWS binds with SO_REUSEPORT, as soketi or another user's server would.
    const script = `
      import uws from 'uWebSockets.js';
      const app = uws.App().get('/*', (res) => res.end('not ocs'));
      app.listen('127.0.0.1', ${port}, (token) => { console.log(token ? 'listening' : 'failed'); });
      process.on('SIGTERM', () => process.exit(0));
    `;
    const foreign = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: fileURLToPath(new URL('../..', import.meta.url)), stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const [line] = (await once(foreign.stdout!, 'data')) as [Buffer];
      assert.equal(line.toString().trim(), 'listening');
      const refused = await runMain(['--config', writeConfig(testConfig({ websocket: { server: { port, host: '127.0.0.1' } } }))]);
      assert.equal(refused.code, 1, refused.stdout + refused.stderr);
      assert.match(refused.stdout, new RegExp(`port ${port} on 127\\.0\\.0\\.1 is taken by a process that is not an ocs-realtime server`));
    } finally {
      foreign.kill('SIGKILL');
      await once(foreign, 'exit');
    }
  });

  test("a cluster node is known by its Redis and key prefix, never its password", () => {
    const { config } = loadConfig({ file: writeConfig({ cluster: { redis_url: 'redis://:s3cret@10.0.0.9:6380/2', key_prefix: 'chat:' } }), env: {} });
    assert.equal(portIdentity(config), 'cluster redis://10.0.0.9:6380/2 prefix "chat:"');
  });
});

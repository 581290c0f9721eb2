/**
 * How many CPUs the server may use, and so how many shards `shards: 0` runs: the affinity, or a
 * cgroup quota (v2 cpu.max, v1 cfs quota) anywhere from the process's cgroup up when smaller.
 * Unit tests on given cgroup files, then the real server under taskset.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { cpuBudget, quotaOf, shardsFor, type ReadText } from '../src/util/cpus.js';
import { loadConfig } from '../src/config/load.js';
import { MAIN, startProcess, testConfig } from './helpers/server.js';

/** A reader over the given files; every other path is missing. */
const files =
  (contents: Record<string, string>): ReadText =>
  (path) =>
    contents[path] ?? null;

describe('the CPU budget', () => {
  test('cpu.max: a quota in CPUs; "max" and garbage are no quota', () => {
    assert.equal(quotaOf('150000 100000\n'), 1.5);
    assert.equal(quotaOf('max 100000'), null);
    assert.equal(quotaOf(''), null);
    assert.equal(quotaOf('-1 100000'), null);
    assert.equal(quotaOf('50000 0'), null);
  });

  test('no cgroup files: the affinity alone', () => {
    assert.deepEqual(cpuBudget(files({}), 8), { affinity: 8, quota: null, usable: 8 });
  });

  test('cgroup v2 inside a container (path /): the root cpu.max is the limit', () => {
    const read = files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '200000 100000\n' });
    assert.deepEqual(cpuBudget(read, 64), { affinity: 64, quota: 2, usable: 2 });
  });

  test('cgroup v2 on a host: the smallest quota from the process cgroup up to the root', () => {
    const read = files({
      '/proc/self/cgroup': '0::/system.slice/ocs.service\n',
      '/sys/fs/cgroup/system.slice/ocs.service/cpu.max': 'max 100000\n',
      '/sys/fs/cgroup/system.slice/cpu.max': '350000 100000\n',
    });
    assert.equal(cpuBudget(read, 8).quota, 3.5);
    const colon = files({ '/proc/self/cgroup': '0::/a:b\n', '/sys/fs/cgroup/a:b/cpu.max': '100000 100000\n' });
    assert.equal(cpuBudget(colon, 8).quota, 1, 'a path with a colon in it');
  });

  test('cgroup v1: cpu.cfs_quota_us over cpu.cfs_period_us of the cpu controller; -1 is none', () => {
    const cgroup = '4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n';
    const limited = files({
      '/proc/self/cgroup': cgroup,
      '/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us': '50000\n',
      '/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us': '100000\n',
    });
    assert.deepEqual(cpuBudget(limited, 4), { affinity: 4, quota: 0.5, usable: 0.5 });
    const unlimited = files({
      '/proc/self/cgroup': cgroup,
      '/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us': '-1\n',
      '/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us': '100000\n',
    });
    assert.equal(cpuBudget(unlimited, 4).quota, null);
  });

  test('a quota above the affinity changes nothing', () => {
    const read = files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '800000 100000\n' });
    assert.equal(cpuBudget(read, 2).usable, 2);
  });

  test('shards: 0 runs one shard per whole CPU it may use, at least one', () => {
    assert.equal(shardsFor({ affinity: 64, quota: 2, usable: 2 }), 2);
    assert.equal(shardsFor({ affinity: 8, quota: 3.5, usable: 3.5 }), 3);
    assert.equal(shardsFor({ affinity: 4, quota: 0.5, usable: 0.5 }), 1);
    const loaded = loadConfig({ env: {}, overrides: { websocket: { server: { shards: 0 } } }, cpus: { affinity: 64, quota: 2, usable: 2 } });
    assert.equal(loaded.shards, 2);
  });
});

const taskset = spawnSync('taskset', ['--version']).status === 0;

describe('the real server on one CPU (taskset -c 0)', { skip: taskset ? false : 'taskset (util-linux) is not installed' }, () => {
  test('shards: 0 runs one shard, without a warning', async () => {
    const server = await startProcess(testConfig({ websocket: { server: { shards: 0 } } }), {}, ['taskset', '-c', '0', process.execPath, MAIN]);
    try {
      const ready = server.logs.find((l) => l.msg === 'ready')!;
      assert.equal(ready.shards, 1);
      assert.equal(server.logs.filter((l) => String(l.msg).startsWith('more shards than CPUs')).length, 0);
    } finally {
      await server.stop();
    }
  });

  test('shards: 2 runs two and warns once that they share the CPU', async () => {
    const server = await startProcess(testConfig({ websocket: { server: { shards: 2 } } }), {}, ['taskset', '-c', '0', process.execPath, MAIN]);
    try {
      assert.equal(server.logs.find((l) => l.msg === 'ready')!.shards, 2);
      const warnings = server.logs.filter((l) => String(l.msg).startsWith('more shards than CPUs'));
      assert.equal(warnings.length, 1);
      assert.deepEqual([warnings[0]!.shards, warnings[0]!.affinity], [2, 1]);
    } finally {
      await server.stop();
    }
  });
});

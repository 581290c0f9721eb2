/**
 * At start the server raises its open-file limit to what max_connections needs where it may,
 * and warns with the fix where it may not.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { MAIN, startProcess, testConfig } from './helpers/server.js';

const WARNING = 'open-file limit too low for max_connections';

/** Runs COMMAND... with both open-file limits set to `limit` (`ulimit -n` sets soft and hard). */
const withOpenFiles = (limit: number, ...command: string[]): string[] => ['bash', '-c', `ulimit -n ${limit} && exec "$@"`, 'bash', ...command];

const manyConnections = testConfig({ websocket: { server: { max_connections: 100_000 } } });

// Raising a hard limit needs CAP_SYS_RESOURCE, which root in a container may lack.
const canRaiseHardLimit = spawnSync('bash', ['-c', 'ulimit -n 512 && ulimit -H -n 1024']).status === 0;

test('a server whose open-file limit is below what max_connections needs, and may not raise it, logs a warning with the fix', { skip: canRaiseHardLimit && 'this user may raise hard limits: the server raises its own' }, async () => {
  const server = await startProcess(manyConnections, {}, withOpenFiles(512, process.execPath, MAIN));
  try {
    const warning = server.logs.find((line) => line.msg === WARNING);
    assert.ok(warning, `no warning in ${JSON.stringify(server.logs)}`);
    assert.equal(warning.level, 40, 'warn');
    assert.equal(warning.soft, 512);
    assert.equal(warning.needed, 201728, '100000 x 2 + 1024, rounded up to 1024');
    assert.equal(warning.max_connections, 100_000);
    assert.match(String(warning.fix), /ulimit -n 201728/);
    assert.match(String(warning.fix), /LimitNOFILE=201728/);
    assert.match(String(warning.fix), /npm run tune-sysctl -- --apply/);
  } finally {
    assert.equal(await server.stop('SIGTERM'), 0);
  }
});

test('a server whose limit is high enough logs no such warning', async () => {
  const server = await startProcess(testConfig({ websocket: { server: { max_connections: 100 } } }), {}, withOpenFiles(4096, process.execPath, MAIN));
  try {
    assert.equal(server.logs.find((line) => line.msg === WARNING), undefined);
  } finally {
    assert.equal(await server.stop('SIGTERM'), 0);
  }
});

test('a server that may raise its hard limit raises it to what max_connections needs, and does not warn', { skip: !canRaiseHardLimit && 'no CAP_SYS_RESOURCE here' }, async () => {
  const server = await startProcess(manyConnections, {}, withOpenFiles(512, process.execPath, MAIN));
  try {
    assert.equal(server.logs.find((line) => line.msg === WARNING), undefined);
    const raised = server.logs.find((line) => line.msg === 'raised the open-file limit for max_connections');
    assert.equal(raised?.from, 512);
    assert.ok(Number(raised?.to) >= 201728);
  } finally {
    assert.equal(await server.stop('SIGTERM'), 0);
  }
});

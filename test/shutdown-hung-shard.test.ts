/**
 * A shard hung past the shutdown deadline (src/util/exit.ts): Node's exit would stop its thread
 * with its uWS sockets open, and the process aborted (exit 134, a core dump, a native stack on
 * stderr). The deadline's way out, a SIGKILL after the log line is out, ends it without that.
 * A real server in a child process, one of its shards stalled as a hot loop would stall it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { tempDataDir } from './helpers/server.js';

const INDEX = fileURLToPath(new URL('../src/index.js', import.meta.url));
const EXIT = fileURLToPath(new URL('../src/util/exit.js', import.meta.url));

/** Starts a server, stalls shard 0, begins the drain, and half a second later ends the process the way `how` says. */
function runHung(how: 'killAfterOutput' | 'process.exit'): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  const script = `
    import { createServer } from ${JSON.stringify(INDEX)};
    import { killAfterOutput } from ${JSON.stringify(EXIT)};
    const server = await createServer({ env: {}, overrides: { websocket: { server: { port: 0, shards: 2, drain_window: 0 } }, store: { data_dir: ${JSON.stringify(tempDataDir())} }, logging: { level: 'error' } } });
    server.injectShardStall(0, 30_000);
    await new Promise((resolve) => setTimeout(resolve, 100));
    void server.drain();
    setTimeout(() => {
      console.log('deadline');
      ${how === 'killAfterOutput' ? 'killAfterOutput()' : 'process.exit(1)'};
    }, 500);
  `;
  // A file, not --eval: the shards' worker threads inherit execArgv, and --input-type with it.
  const file = join(mkdtempSync(join(tmpdir(), 'ocs-hung-')), 'hung.mjs');
  writeFileSync(file, script);
  const child = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
}

describe('the shutdown deadline with a hung shard', () => {
  test('the process ends by SIGKILL once its last line is out: no abort, no native stack', async () => {
    const result = await runHung('killAfterOutput');
    assert.equal(result.signal, 'SIGKILL', result.stderr);
    assert.match(result.stdout, /deadline/);
    assert.doesNotMatch(result.stderr, /Assertion failed|Native stack/);
  });

  test('(why) exiting the usual way aborts on the hung shard\'s open sockets', async () => {
    const result = await runHung('process.exit');
    assert.ok(result.signal === 'SIGABRT' || result.code === 134, `code ${result.code}, signal ${result.signal}`);
    assert.match(result.stderr, /uv_loop_close\(\) while having open handles/);
  });
});

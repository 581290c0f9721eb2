import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { readWindow, underCallgrind } from '../tools/bench/lib/callgrind.js';

// A dump as callgrind writes it: compressed names ("(id) name" once, "(id)" after), a cost
// line per position, and after each `calls=` line the call's inclusive cost, not the caller's own.
const DUMP = `version: 1
creator: callgrind-3.19.0
cmd: node server.js
events: Ir
summary: 1000

ob=(1) /usr/bin/node
fl=(1) ???
fn=(1) v8::internal::compiler::GraphReducer::Reduce(v8::internal::compiler::Node*)
0x1 100
fn=(2) 0x000000000d12da00
0x2 300
cfn=(1)
calls=2 0x1
0x2 100
fn=(3) Builtins_LoadIC
0x3 50
fn=(2)
0x4 200
ob=(2) /work/node_modules/uWebSockets.js/binaries/uws_linux_x64_115.node
fn=(4) 0x00000000000f0760
0x5 250
`;

describe('bench:instructions reads callgrind', () => {
  test('each function counts its own instructions, not those of the functions it calls; JIT code is named from the perf map', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ocs-callgrind-test-'));
    const pid = 4_000_000 + (process.pid % 100_000); // above any real pid: a perf map of our own
    const map = `/tmp/perf-${pid}.map`;
    try {
      writeFileSync(join(dir, 'dump'), DUMP);
      writeFileSync(map, 'd12d900 200 JS:*sparseCounts file:///x/dist/src/metrics/hdr.js:115:29\n');
      const window = readWindow(join(dir, 'dump'), pid);
      assert.equal(window.instructions, 100 + 300 + 50 + 200 + 250);
      assert.deepEqual(window.top[0], { name: 'JS:*sparseCounts file:///x/dist/src/metrics/hdr.js:115:29', instructions: 500 });
      assert.equal(window.byCategory.metrics, 500);
      assert.equal(window.byCategory.compiler, 100);
      assert.equal(window.byCategory.javascript, 50);
      // The uWS addon has no symbols: its functions are counted by their object file.
      assert.equal(window.byCategory.uws, 250);
      assert.equal(window.functions.get('Builtins_LoadIC'), 50, 'every function by name, not only the top ones');
    } finally {
      rmSync(dir, { recursive: true, force: true });
      rmSync(map, { force: true });
    }
  });

  test('the server runs under callgrind behind its pinning, with V8 naming its code', () => {
    const argv = underCallgrind(['taskset', '-c', '0', process.execPath, '--no-memory-reducer', 'server.js'], '/tmp/out');
    assert.deepEqual(argv.slice(0, 4), ['taskset', '-c', '0', 'valgrind']);
    assert.deepEqual(argv.slice(-4), [process.execPath, '--perf-basic-prof', '--no-memory-reducer', 'server.js']);
    assert.throws(() => underCallgrind(['python3', 'x.py'], '/tmp/out'), /not a node command line/);
  });
});

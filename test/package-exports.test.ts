/**
 * The package as another project gets it: `npm pack`, unpacked into a fresh project's
 * node_modules (its dependencies linked from ours, as npm would install them, without the
 * network), then the imports docs/messaging.md and the README document, run by Node and
 * type-checked by tsc, and the browser build a bundler picks for `ocs-realtime/client`.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { runCommand } from './helpers/server.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };

describe('ocs-realtime installed in another project', () => {
  let project: string;
  before(async () => {
    project = mkdtempSync(join(tmpdir(), 'ocs-consumer-'));
    const packed = await runCommand('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', project], { cwd: ROOT }, 60_000);
    assert.equal(packed.code, 0, packed.stderr);
    const tarball = (JSON.parse(packed.stdout) as Array<{ filename: string }>)[0]!.filename;
    const installed = join(project, 'node_modules', 'ocs-realtime');
    mkdirSync(installed, { recursive: true });
    const untar = await runCommand('tar', ['-xzf', join(project, tarball), '-C', installed, '--strip-components=1']);
    assert.equal(untar.code, 0, untar.stderr);
    // The package's dependencies, and `ws` (the consumer's own, for Node 20), from our node_modules.
    for (const dep of [...Object.keys(pkg.dependencies), 'ws', '@types/node', '@types/ws']) {
      const target = join(project, 'node_modules', dep);
      mkdirSync(join(target, '..'), { recursive: true });
      symlinkSync(join(ROOT, 'node_modules', dep), target);
    }
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', type: 'module', private: true }));
  });
  after(() => rmSync(project, { recursive: true, force: true }));

  test('the tarball holds the built server, client and browser bundle, and no tests or sources', async () => {
    const listing = await runCommand('tar', ['-tzf', join(project, (await runCommand('ls', [project])).stdout.split('\n').find((f) => f.endsWith('.tgz'))!)]);
    const files = listing.stdout.split('\n');
    for (const file of ['package/dist/src/index.js', 'package/dist/src/index.d.ts', 'package/dist/src/client/index.js', 'package/dist/src/client/index.d.ts', 'package/dist/client/ocs-client.js', 'package/dist/workers/shard.js', 'package/config/performance_config.yaml']) {
      assert.ok(files.includes(file), `${file} missing`);
    }
    assert.ok(!files.some((f) => f.startsWith('package/dist/test/') || f.startsWith('package/test/')), 'tests are not shipped');
  });

  test("`import { createServer } from 'ocs-realtime'` and `import { OcsClient } from 'ocs-realtime/client'` work in Node", async () => {
    writeFileSync(
      join(project, 'main.mjs'),
      `import { createServer } from 'ocs-realtime';
import { OcsClient } from 'ocs-realtime/client';
import WebSocket from 'ws';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
const server = await createServer({ env: {}, overrides: { websocket: { server: { host: '127.0.0.1', port: 0, shards: 1 } }, store: { data_dir: mkdtempSync(join(tmpdir(), 'ocs-consumer-data-')) }, logging: { level: 'error' } } });
const client = new OcsClient({ url: 'ws://127.0.0.1:' + server.port + '/ws', user: 'consumer', WebSocket });
const got = new Promise((resolve) => client.on('message', resolve));
await client.connect();
await client.join('lobby');
const id = await client.publish('lobby', { text: 'hello from another project' });
const msg = await got;
await client.close();
await server.close();
console.log(JSON.stringify({ id, msg }));
`,
    );
    const run = await runCommand(process.execPath, ['main.mjs'], { cwd: project }, 60_000);
    assert.equal(run.code, 0, run.stderr);
    const { id, msg } = JSON.parse(run.stdout.trim().split('\n').pop()!) as { id: string; msg: { id: string; data: unknown } };
    assert.equal(msg.id, id);
    assert.deepEqual(msg.data, { text: 'hello from another project' });
  });

  test('the types resolve for a TypeScript project (NodeNext), and a misuse is a type error', async () => {
    writeFileSync(
      join(project, 'typed.ts'),
      `import { createServer, type RunningServer } from 'ocs-realtime';
import { OcsClient, OcsError, type Message, type JoinResult } from 'ocs-realtime/client';
import WebSocket from 'ws';
export async function start(): Promise<RunningServer> { return createServer(); }
const client = new OcsClient({ url: 'ws://localhost:8765/ws', token: async () => 'jwt', WebSocket });
client.on('message', (m: Message) => m.id.length);
client.on('error', (e) => (e instanceof OcsError ? e.code : e.message));
export const joined: Promise<JoinResult> = client.join('lobby', { presence: true });
`,
    );
    writeFileSync(join(project, 'bad.ts'), `import { OcsClient } from 'ocs-realtime/client';\nnew OcsClient({ url: 'ws://x/ws' }).publish(42);\n`);
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const flags = ['--noEmit', '--strict', '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--target', 'ES2022', '--skipLibCheck', '--types', 'node'];
    const good = await runCommand(process.execPath, [tsc, ...flags, 'typed.ts'], { cwd: project }, 60_000);
    assert.equal(good.code, 0, good.stdout + good.stderr);
    const bad = await runCommand(process.execPath, [tsc, ...flags, 'bad.ts'], { cwd: project }, 60_000);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stdout, /bad\.ts\(2,/);
  });

  test('a bundler building for browsers gets the prebuilt browser module, with no Node import in it', async () => {
    writeFileSync(join(project, 'page.js'), `import { OcsClient } from 'ocs-realtime/client';\nwindow.client = new OcsClient({ url: 'ws://localhost:8765/ws' });\n`);
    const { build } = await import('esbuild');
    const result = await build({ entryPoints: [join(project, 'page.js')], absWorkingDir: project, bundle: true, platform: 'browser', format: 'esm', write: false, metafile: true, outdir: join(project, 'out'), splitting: true });
    const inputs = Object.keys(result.metafile.inputs);
    assert.ok(inputs.some((i) => i.includes('dist/client/ocs-client.js')), `bundled from ${inputs.join(', ')}`);
    for (const file of result.outputFiles) assert.doesNotMatch(file.text, /from\s*["']node:|require\(["']node:/);
  });
});

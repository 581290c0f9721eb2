// Bundles the client SDK for browsers (esbuild): dist/client/ocs-client.js, an ES module, with
// the MessagePack codec split into a chunk that only `encoding: 'msgpack'` loads. platform
// 'browser' makes a Node-only import a build error. Prints the sizes (minified, and gzipped).
import { build } from 'esbuild';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

const outdir = new URL('../dist/client/', import.meta.url).pathname;
const result = await build({
  entryPoints: [new URL('../src/client/index.ts', import.meta.url).pathname],
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  sourcemap: true,
  metafile: true,
  outdir,
  entryNames: 'ocs-client',
  chunkNames: 'ocs-client-[name]-[hash]',
  logLevel: 'warning',
});
// A chunk's name carries its hash: a file this build did not write is an older build's.
const written = new Set(Object.keys(result.metafile.outputs).map((f) => f.slice(f.lastIndexOf('/') + 1)));
for (const name of readdirSync(outdir)) if (!written.has(name)) rmSync(outdir + name);
const sizes = {};
for (const file of Object.keys(result.metafile.outputs).filter((f) => f.endsWith('.js'))) {
  const bytes = readFileSync(file);
  sizes[file.slice(file.lastIndexOf('/') + 1)] = { minified: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
}
if (process.argv.includes('--sizes')) process.stdout.write(JSON.stringify(sizes, null, 2) + '\n');

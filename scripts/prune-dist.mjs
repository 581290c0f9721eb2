// Before a build: removes from dist/ the output of source files that no longer exist, so that a
// deleted test or module cannot linger, and nothing else. dist/ is never emptied: a server
// running from it (pm2) keeps every file it may still load (a shard thread that restarts loads
// workers/shard.js again), and tsc -b rewrites only what changed.
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = join(root, 'dist');
// What tsc emits for one source file X.ts (and X.mts): X.js, X.js.map, X.d.ts, X.d.ts.map.
const OUTPUT = /\.(js|js\.map|d\.ts|d\.ts\.map)$/;

/** dist/PATH.js comes from PATH.ts (dist/test/X from test/X, dist/tools/X from tools/X: each project's rootDir is its folder). */
function sourceExists(file) {
  const stem = relative(dist, file).replace(OUTPUT, '');
  return ['.ts', '.mts', '.tsx'].some((ext) => existsSync(join(root, stem + ext)));
}

// dist/client is the SDK's browser bundle, esbuild's output from src/client as a whole (no file
// per source): scripts/build-client.mjs removes what it no longer writes there.
const BUNDLE = join(dist, 'client');

function prune(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (path === BUNDLE) continue;
    if (statSync(path).isDirectory()) {
      prune(path);
      if (readdirSync(path).length === 0) rmSync(path, { recursive: true });
    } else if (OUTPUT.test(name) && !sourceExists(path)) {
      rmSync(path);
    }
  }
}

if (existsSync(dist)) prune(dist);

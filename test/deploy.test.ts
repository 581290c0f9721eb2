import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { configSchema } from '../src/config/schema.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const require = createRequire(import.meta.url);

test('pm2 ecosystem file: one cluster-mode instance of the built server, ready when every shard listens, stopped after its drain', () => {
  const { apps } = require(`${root}ecosystem.config.cjs`) as { apps: Array<Record<string, unknown>> };
  assert.equal(apps.length, 1);
  const app = apps[0]!;
  assert.equal(app.exec_mode, 'cluster', 'pm2 reloads only cluster-mode apps with an overlap');
  assert.equal(app.instances, 1, 'the server shards itself');
  assert.equal(app.script, 'dist/src/main.js');
  assert.ok(existsSync(`${root}dist/src/main.js`), 'dist/src/main.js is what npm run build (and npm install) produce');
  assert.equal(app.cwd, root.replace(/\/$/, ''), 'relative paths are from the checkout');
  assert.equal(app.wait_ready, true);
  assert.ok(Number(app.listen_timeout) >= 10_000);
  const configArg = String(app.args).match(/--config (\S+)/)?.[1];
  assert.ok(configArg && existsSync(`${root}${configArg}`));
  // pm2 must give a stopping server its whole shutdown_timeout (which holds the drain) before it kills it.
  const { shutdown_timeout, drain_window } = configSchema.parse({}).websocket.server;
  assert.ok(Number(app.kill_timeout) > shutdown_timeout * 1000);
  assert.ok(shutdown_timeout >= drain_window + 5);
  assert.deepEqual(app.stop_exit_codes, [2], 'a config error (exit 2) is not restarted over and over');
  assert.equal((app.env as Record<string, string>).NODE_ENV, 'production');
  assert.equal((app.env as Record<string, string>).WEBSOCKET_ALLOW_ANONYMOUS, undefined, 'left to auto: a fresh machine without a secret starts (closed) instead of crash-looping');
  assert.ok((app.node_args as string[]).some((arg) => /^--max-old-space-size=\d+$/.test(arg)));
});

import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { configSchema } from '../src/config/schema.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const require = createRequire(import.meta.url);

test('pm2 ecosystem file: one fork-mode process running the built server with the shipped config', () => {
  const { apps } = require(`${root}ecosystem.config.cjs`) as { apps: Array<Record<string, unknown>> };
  assert.equal(apps.length, 1);
  const app = apps[0]!;
  assert.equal(app.exec_mode, 'fork', 'the shards share the port themselves; pm2 cluster mode would add a second balancer');
  assert.equal(app.instances, 1);
  // The wrapper that raises the open-file limit, run as a program (pm2 would hand a script to node)...
  assert.equal(app.interpreter, 'none');
  assert.ok(statSync(`${root}${String(app.script)}`).mode & 0o111, `${String(app.script)} is executable`);
  // ...then becomes the built server.
  assert.match(readFileSync(`${root}${String(app.script)}`, 'utf8'), /^exec node "\$\(dirname "\$0"\)\/\.\.\/dist\/src\/main\.js" "\$@"$/m);
  assert.ok(existsSync(`${root}dist/src/main.js`), 'dist/src/main.js is what npm run build produces');
  assert.equal(app.node_args, undefined, 'pm2 would pass node_args to the wrapper: node options go in NODE_OPTIONS');
  assert.match(String((app.env as Record<string, string>).NODE_OPTIONS), /--max-old-space-size=\d+/);
  const configArg = String(app.args).match(/--config (\S+)/)?.[1];
  assert.ok(configArg && existsSync(`${root}${configArg}`));
  // pm2 must give a SIGTERM'd server its whole shutdown_timeout before it kills it.
  const { shutdown_timeout } = configSchema.parse({}).websocket.server;
  assert.ok(Number(app.kill_timeout) > shutdown_timeout * 1000);
  assert.equal((app.env as Record<string, string>).NODE_ENV, 'production');
});

/**
 * Why a socket's uWS user data is `{ conn }` and not the Connection (src/shard/connection.ts):
 * uWS copies the object given to upgrade() into a new one, and a copy of a Connection's many
 * fields is a dictionary-mode object, where every field read is a hash lookup. A copy of
 * `{ conn }` is a fast object whose `conn` is the Connection itself, a fast object too.
 * V8's %HasFastProperties needs --allow-natives-syntax, so the check runs in a child node.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const CONNECTION = new URL('../src/shard/connection.js', import.meta.url).href;
const ROOT = fileURLToPath(new URL('../../package.json', import.meta.url));

const CHILD = `
import { createRequire } from 'node:module';
const require = createRequire(${JSON.stringify(ROOT)});
const uWS = require('uWebSockets.js');
const WebSocket = require('ws');
const { newConnection } = await import(${JSON.stringify(CONNECTION)});
const passed = [];
const seen = [];
const app = uWS.App().ws('/*', {
  upgrade: (res, req, context) => {
    const conn = newConnection('s' + passed.length, 'u', null, 1, Date.now());
    const userData = passed.length === 0 ? conn : { conn };
    passed.push(userData);
    res.upgrade(userData, req.getHeader('sec-websocket-key'), req.getHeader('sec-websocket-protocol'), req.getHeader('sec-websocket-extensions'), context);
  },
  open: (ws) => {
    const data = ws.getUserData();
    const i = seen.length;
    seen.push({ copied: data !== passed[i], fast: %HasFastProperties(data), connIsOurs: data.conn === passed[i].conn, connFast: data.conn ? %HasFastProperties(data.conn) : null });
    ws.end();
  },
});
app.listen('127.0.0.1', 0, (listen) => {
  const url = 'ws://127.0.0.1:' + uWS.us_socket_local_port(listen) + '/';
  new WebSocket(url).on('close', () => new WebSocket(url).on('close', () => {
    uWS.us_listen_socket_close(listen);
    console.log(JSON.stringify(seen));
  }));
});
`;

test('uWS copies the user data; a copy of a Connection is slow, a copy of { conn } is fast and holds the Connection itself', () => {
  const out = execFileSync(process.execPath, ['--allow-natives-syntax', '--input-type=module', '-e', CHILD], { encoding: 'utf8', timeout: 30_000 });
  const [whole, wrapped] = JSON.parse(out.trim().split('\n').at(-1)!) as { copied: boolean; fast: boolean; connIsOurs: boolean; connFast: boolean | null }[];
  assert.deepEqual([whole!.copied, whole!.fast], [true, false], 'a Connection as the user data: copied into a dictionary-mode object');
  assert.deepEqual([wrapped!.copied, wrapped!.fast, wrapped!.connIsOurs, wrapped!.connFast], [true, true, true, true], '{ conn }: a fast copy that points at our fast Connection');
});

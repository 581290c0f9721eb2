// @ts-check
/**
 * The chat example's development server: serves the page, the SDK's browser build
 * (dist/client, from `npm run build`) and short-lived tokens for whoever asks (development
 * only: a real app hands tokens to users it has authenticated).
 *
 *   node examples/chat/serve.mjs                 also runs ocs-realtime in this process (port 8765)
 *   node examples/chat/serve.mjs --ws URL        uses a server already running at URL (its
 *                                                WEBSOCKET_AUTH_SECRET in the environment, or
 *                                                anonymous users if it allows them)
 *   --port N                                     the page's port (default 8080; 0: any free one)
 *
 * Logs one JSON line {"msg":"ready","port":N,"ws":URL} when it listens.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SignJWT } from 'jose';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const BUNDLE = fileURLToPath(new URL('../../dist/client/', import.meta.url));
const TYPES = new Map([['.html', 'text/html; charset=utf-8'], ['.js', 'text/javascript; charset=utf-8'], ['.css', 'text/css; charset=utf-8'], ['.map', 'application/json']]);
const NAME = /^[A-Za-z0-9_.:@/#+-]{1,64}$/;
const TOKEN_SECONDS = 15 * 60;

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const at = args.indexOf(name);
  return at >= 0 && args[at + 1] !== undefined ? args[at + 1] : fallback;
};

let wsUrl = flag('--ws', '');
let secret = process.env.WEBSOCKET_AUTH_SECRET ?? '';
let embedded = null;
if (wsUrl === '') {
  const { createServer } = await import('../../dist/src/index.js');
  if (secret === '') secret = randomBytes(24).toString('hex');
  embedded = await createServer({ overrides: { websocket: { auth: { secret, allow_anonymous: false } } } });
  wsUrl = `ws://localhost:${embedded.port}/ws`;
}
const key = new TextEncoder().encode(secret);

/** Sends a file from `dir`, refusing any path that leaves it. */
async function sendFile(res, dir, name) {
  const path = normalize(join(dir, name));
  if (!path.startsWith(dir)) return answer(res, 404, 'text/plain', 'not found');
  try {
    const body = await readFile(path);
    answer(res, 200, TYPES.get(extname(path)) ?? 'application/octet-stream', body);
  } catch {
    answer(res, 404, 'text/plain', 'not found');
  }
}

function answer(res, status, type, body) {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

const http = createHttpServer(async (req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (url.pathname === '/') return sendFile(res, HERE, 'index.html');
  if (url.pathname === '/chat.js' || url.pathname === '/chat.css') return sendFile(res, HERE, url.pathname.slice(1));
  if (url.pathname.startsWith('/client/')) return sendFile(res, BUNDLE, url.pathname.slice('/client/'.length));
  if (url.pathname === '/config.json') return answer(res, 200, 'application/json', JSON.stringify({ ws: wsUrl, tokens: secret !== '' }));
  if (url.pathname === '/token') {
    const user = url.searchParams.get('user') ?? '';
    if (secret === '' || !NAME.test(user)) return answer(res, 400, 'application/json', JSON.stringify({ error: 'user must be a name' }));
    const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(user).setIssuedAt().setExpirationTime(Math.floor(Date.now() / 1000) + TOKEN_SECONDS).sign(key);
    return answer(res, 200, 'application/json', JSON.stringify({ token }));
  }
  answer(res, 404, 'text/plain', 'not found');
});

http.listen(Number(flag('--port', '8080')), '127.0.0.1', () => {
  const address = http.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  console.log(JSON.stringify({ level: 30, msg: 'ready', port, ws: wsUrl, page: `http://127.0.0.1:${port}/?user=alice` }));
});

const stop = () => {
  http.close();
  http.closeAllConnections();
  void (embedded ? embedded.close() : Promise.resolve()).then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);

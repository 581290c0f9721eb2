/**
 * `server.port: 0`: the server listens on a port the kernel picks, and no other process can be
 * given that port while the server starts (src/util/free-port.ts).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { startInProcess } from './helpers/server.js';

/**
 * A process that binds port 0 over and over for `ms` and keeps every port it is given for
 * 200 ms, as a busy machine's other programs (or other test servers) do; prints how many it took.
 */
const PORT_TAKER = `
  import { createServer } from 'node:net';
  const end = Date.now() + Number(process.argv[1]);
  let taken = 0;
  const takeOne = () => {
    if (Date.now() > end) return;
    const s = createServer();
    s.on('error', () => setImmediate(takeOne));
    s.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => {
      taken++;
      setTimeout(() => s.close(), 200);
      setImmediate(takeOne);
    });
  };
  for (let i = 0; i < 8; i++) takeOne();
  setTimeout(() => console.log(taken), Number(process.argv[1]) + 300);
`;

function takePorts(ms: number): Promise<number> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', PORT_TAKER, String(ms)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  return new Promise((resolve) => child.once('exit', () => resolve(Number(out.trim()))));
}

/**
 * The inodes of the listening TCP sockets on `port` in this network namespace, of every
 * process (/proc/net/tcp). By inode: a socket can be listed twice when others come and go
 * while the file is read, as the taker's do.
 */
function listenersOn(port: number): Set<string> {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes = new Set<string>();
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields[1]?.endsWith(`:${hexPort}`) && fields[3] === '0A') inodes.add(fields[9]!);
  }
  return inodes;
}

test('a server on port 0 starts, and listens alone, while another process takes every port the kernel hands out', { skip: process.platform !== 'linux' && 'reads /proc/net/tcp' }, async () => {
  const taker = takePorts(2_000);
  await new Promise((resolve) => setTimeout(resolve, 300)); // the taker holds thousands of ports by now
  // Its two shards listen on one port. When the primary picked the port before starting the first
  // shard's thread, the port was free for a few hundred ms and the taker got it in most runs (E_STARTUP).
  const server = await startInProcess({ websocket: { server: { port: 0, shards: 2 } } });
  try {
    assert.ok(server.port > 0);
    assert.equal(listenersOn(server.port).size, 2, 'the two shards, and no other socket');
  } finally {
    await server.close();
  }
  assert.ok((await taker) > 1_000, 'the taker took ports throughout the start');
});

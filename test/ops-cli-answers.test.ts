/**
 * The operations CLIs read what a server at the URL they are given answers, bounded
 * (src/ops/bounded-text.ts): a broken or hostile server that sends an endless body, or declares
 * one of gigabytes, gets a clear error and an exit code, not a CLI that grows without end.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runCommand } from './helpers/server.js';

const DLQ_CLI = fileURLToPath(new URL('../scripts/dlq.js', import.meta.url));
const REPORT_CLI = fileURLToPath(new URL('../scripts/report.js', import.meta.url));

describe('npm run dlq and npm run report against a server whose answers never end', () => {
  let server: Server;
  let url: string;
  const MiB = Buffer.alloc(1024 * 1024, 'x');
  before(async () => {
    server = createServer((req, res) => {
      if (req.url?.startsWith('/admin/dlq')) {
        // A declared length of 8 GiB: refused before a byte of it is read.
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(8 * 1024 ** 3) });
        res.write('{"count":');
        return;
      }
      // Endless, as fast as the client reads.
      res.writeHead(200, { 'content-type': 'application/json' });
      const more = (): void => {
        while (!res.destroyed && res.write(MiB));
      };
      res.on('drain', more);
      more();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  test('dlq: a declared body of 8 GiB is refused at once, exit 1', async () => {
    const run = await runCommand(process.execPath, [DLQ_CLI, 'list', '--url', url], {}, 10_000);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /^dlq: http:\/\/127\.0\.0\.1:\d+: the answer is larger than 268435456 bytes/m);
  });

  test('report: an endless /stats is cut at 16 MiB, exit 1', async () => {
    const run = await runCommand(process.execPath, [REPORT_CLI, '--url', url, '--format', 'json'], {}, 10_000);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /the answer is larger than 16777216 bytes/);
  });
});

/**
 * monitoring.export_file on a disk that fills up (src/metrics/export-file.ts): lines are dropped
 * whole while it is full, so every line of the file parses once space returns.
 */
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ExportFile } from '../src/metrics/export-file.js';
import { createLogger } from '../src/util/logger.js';
import { mountSmallDisk } from './helpers/small-disk.js';

const disk = mountSmallDisk('64k');

describe('the export file on a full disk', { skip: typeof disk === 'string' ? disk : false }, () => {
  test('a line the disk has room for only in part is taken back: the file holds whole lines only', async () => {
    const small = disk as Exclude<typeof disk, string>;
    try {
      const file = join(small.dir, 'export.jsonl');
      const exporter = new ExportFile({ file, maxBytes: 10_000_000, keep: 0 }, createLogger('silent'));
      const line = (n: number): string => JSON.stringify({ n, pad: 'x'.repeat(5000) });
      exporter.append(JSON.stringify({ n: 0 }));
      await new Promise((resolve) => setTimeout(resolve, 200));
      // Every other page of the file system taken: the next line fills the rest of the export
      // file's page, then finds none (a short write).
      const filler = join(small.dir, 'filler');
      const fd = openSync(filler, 'w');
      try {
        for (;;) writeSync(fd, Buffer.alloc(4096, 1));
      } catch {
        // ENOSPC: full.
      } finally {
        closeSync(fd);
      }
      for (let n = 1; n <= 3; n++) exporter.append(line(n));
      await new Promise((resolve) => setTimeout(resolve, 200));
      rmSync(filler);
      exporter.append(line(4));
      await exporter.close();
      const lines = readFileSync(file, 'utf8').split('\n');
      assert.equal(lines.pop(), '', 'ends with a whole line');
      assert.deepEqual(lines.map((text) => (JSON.parse(text) as { n: number }).n), [0, 4]);
    } finally {
      small.unmount();
    }
  });
});

/**
 * A data.mdb is read by hand before LMDB opens it (src/store/lmdb-header.ts): lmdb-js segfaults
 * on a file that is not LMDB's and dies of SIGBUS on one cut short, with no line in the log.
 * A real store, then copies of it cut at page boundaries, as a `cp` onto a full disk leaves one;
 * and a new store on a full disk, which LMDB would write before the server's disk checks start.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { MessageStore } from '../src/store/store.js';
import { checkHeader } from '../src/store/lmdb-header.js';
import { tempDataDir } from './helpers/server.js';
import { mountSmallDisk } from './helpers/small-disk.js';

test("a whole store passes; one cut short, even at a page boundary with its magic number intact, is named with what LMDB's meta page needs", async () => {
  const dataDir = tempDataDir();
  const store = await MessageStore.open(dataDir, 'none');
  for (let n = 0; n < 20; n++) await store.put({ id: `m${n}`, seq: n, target: 'u:bob', from: 'alice', group: null, data: JSON.stringify('x'.repeat(8192)), pri: 1, ts: n, at: 0, attempts: 0, strategy: null });
  await store.close();
  const file = join(dataDir, 'data.mdb');
  const whole = readFileSync(file);
  assert.equal(checkHeader(file), null);
  for (const size of [4096, 8192, 16384, whole.length - 4096]) {
    writeFileSync(file, whole.subarray(0, size));
    assert.match(checkHeader(file) ?? 'passed', new RegExp(`is cut short: ${size} bytes where LMDB's own record says \\d+`), `cut at ${size}`);
    assert.throws(() => MessageStore.check(dataDir), /store\.data_dir\) is not a usable LMDB store: .* is cut short/);
  }
  writeFileSync(file, Buffer.from('not an LMDB file at all, but long enough to have a header'));
  assert.match(checkHeader(file)!, /bad magic number/);
  writeFileSync(file, '');
  assert.equal(checkHeader(file), null, 'empty: LMDB makes it');
});

test('a new store on a disk without room is refused with a line naming store.data_dir, not made (lmdb-js died of SIGBUS writing it)', async (t) => {
  const small = mountSmallDisk('1m');
  if (typeof small === 'string') return t.skip(small);
  try {
    writeFileSync(join(small.dir, 'filler'), Buffer.alloc(1024 * 1024 - 64 * 1024));
    const dataDir = join(small.dir, 'store');
    await assert.rejects(MessageStore.open(dataDir, 'none'), /store: no room to create the store in .* \(store\.data_dir\): \d+ bytes free on its disk/);
  } finally {
    small.unmount();
  }
});

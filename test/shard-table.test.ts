import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createShardTable, ShardTable } from '../src/shared/shard-table.js';

describe("the shard table's store health (the primary writes it, every shard's /health reads it)", () => {
  test('writable with no error until told otherwise; what the primary publishes, a shard reads, through the same shared memory', () => {
    const buffers = createShardTable(2);
    const primary = new ShardTable(buffers);
    const shard = new ShardTable(buffers);
    assert.deepEqual(shard.storeHealth(), { writable: true, lastError: null, failedWrites: 0 });
    primary.setStoreHealth({ writable: false, lastError: 'ENOSPC: no space left on device — données', failedWrites: 3 });
    assert.deepEqual(shard.storeHealth(), { writable: false, lastError: 'ENOSPC: no space left on device — données', failedWrites: 3 });
    primary.setStoreHealth({ writable: true, lastError: null, failedWrites: 3 });
    assert.deepEqual(shard.storeHealth(), { writable: true, lastError: null, failedWrites: 3 });
  });

  test('a long error is cut to the room the table has, never spilling over', () => {
    const table = new ShardTable(createShardTable(1));
    table.setStoreHealth({ writable: false, lastError: 'e'.repeat(2000), failedWrites: 1 });
    assert.equal(table.storeHealth().lastError, 'e'.repeat(512));
  });
});

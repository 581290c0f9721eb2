import { Buffer } from 'node:buffer';
import { closeSync, existsSync, openSync, readSync } from 'node:fs';

/**
 * LMDB magic of the first meta page, where lmdb-js's LMDB build writes it. Why check by hand:
 * lmdb-js 3.x segfaults opening a data.mdb that is not an LMDB file, taking the process down
 * with no message. Damage deeper inside a valid file is not detected here.
 */
const MDB_MAGIC = 0xbeefc0de;
const MAGIC_OFFSET = 24;

/** Why `file` is not an LMDB data file, or null when it is (or is absent or empty). */
export function checkHeader(file: string): string | null {
  if (!existsSync(file)) return null;
  const header = Buffer.alloc(MAGIC_OFFSET + 4);
  const fd = openSync(file, 'r');
  try {
    const read = readSync(fd, header, 0, header.length, 0);
    if (read === 0) return null; // empty: LMDB initialises it
    if (read < header.length || header.readUInt32LE(MAGIC_OFFSET) !== MDB_MAGIC) return `${file} is not an LMDB data file (bad magic number): restore it from a backup or move it away`;
    return null;
  } finally {
    closeSync(fd);
  }
}

import { Buffer } from 'node:buffer';
import { closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs';

/**
 * The two meta pages at the start of an LMDB data file, where lmdb-js's LMDB build writes them
 * (a 24-byte page header, then the meta). Why read them by hand: lmdb-js 3.x segfaults opening
 * a data.mdb that is not an LMDB file, and dies of SIGBUS on one cut short (a restore by `cp`
 * onto a full disk leaves the start of the file, magic number and all), taking the process down
 * with no message either way. Damage deeper inside a whole file is not detected here.
 */
const MDB_MAGIC = 0xbeefc0de;
const MAGIC_OFFSET = 24;
/** The free-pages database's md_pad, where LMDB keeps the page size. */
const PAGE_SIZE_OFFSET = 48;
/** mm_last_pg, the last page in use, and mm_txnid, which tells the newer meta page. */
const LAST_PAGE_OFFSET = 144;
const TXNID_OFFSET = 152;

/** Why `file` is not an LMDB data file, or null when it is (or is absent or empty). */
export function checkHeader(file: string): string | null {
  if (!existsSync(file)) return null;
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return null; // empty: LMDB initialises it
    const first = readAt(fd, 0, TXNID_OFFSET + 8);
    if (first.length < MAGIC_OFFSET + 4 || first.readUInt32LE(MAGIC_OFFSET) !== MDB_MAGIC) return `${file} is not an LMDB data file (bad magic number): restore it from a backup or move it away`;
    const pageSize = first.length >= PAGE_SIZE_OFFSET + 4 ? first.readUInt32LE(PAGE_SIZE_OFFSET) : 0;
    // A page size LMDB would not use: a layout this check does not know, so it says nothing of the size.
    if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) return null;
    const second = readAt(fd, pageSize, TXNID_OFFSET + 8);
    const metas = [first, second].filter((page) => page.length === TXNID_OFFSET + 8 && page.readUInt32LE(MAGIC_OFFSET) === MDB_MAGIC);
    const newest = metas.sort((a, b) => Number(b.readBigUInt64LE(TXNID_OFFSET) - a.readBigUInt64LE(TXNID_OFFSET)))[0];
    const needed = newest === undefined ? 2 * pageSize : (Number(newest.readBigUInt64LE(LAST_PAGE_OFFSET)) + 1) * pageSize;
    if (size < needed) return `${file} is cut short: ${size} bytes where LMDB's own record says ${needed} (a copy that ran out of disk?): restore it from a backup or move it away`;
    return null;
  } finally {
    closeSync(fd);
  }
}

function readAt(fd: number, position: number, length: number): Buffer {
  const buffer = Buffer.alloc(length);
  return buffer.subarray(0, readSync(fd, buffer, 0, length, position));
}

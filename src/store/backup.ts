/**
 * A consistent copy of the store while the server runs: LMDB copies the environment inside one
 * read transaction (mdb_env_copy2), so writers go on meanwhile and the copy is the store as of
 * one commit. Opened read-only, so it neither writes to the store nor touches its lease.
 *
 * The copy is made in a directory of its own inside the target (`.partial-PID-N`) and linked to
 * TARGET/data.mdb only once whole and without the live server's lease: a copy cut short (no
 * space left, Ctrl-C) is a truncated store that still opens, and killed a server started on it
 * (SIGBUS); and of two backups into one new directory, the loser removed the winner's copy.
 */
import { existsSync, linkSync, readdirSync, rmSync, statSync } from 'node:fs';
import { makeDirectory } from '../util/make-dir.js';
import { join, resolve, sep } from 'node:path';
import { open } from 'lmdb';
import { OcsError } from '../protocol/errors.js';
import { forgetLeaseRecords } from './leases.js';

export interface BackupResult {
  /** The copy: TARGET/data.mdb, a store directory of its own (store.data_dir can point at TARGET). */
  file: string;
  bytes: number;
  ms: number;
}

/** Where a backup under way writes, for a signal handler to remove (null when none is under way). */
export const partialCopy: { dir: string | null } = { dir: null };

let copies = 0;

/** Copies the store in `dataDir` into the directory `target` (created; it must not hold a store already). */
export async function backupStore(dataDir: string, target: string, compact = false): Promise<BackupResult> {
  const source = resolve(dataDir);
  if (!existsSync(join(source, 'data.mdb'))) throw new OcsError('E_CONFIG', `backup: no store in ${source} (store.data_dir): nothing to copy`);
  const dir = resolve(target);
  if (dir === source) throw new OcsError('E_CONFIG', 'backup: the target is the store itself');
  // Inside it: on the store's own disk, and in the directory a restore moves aside.
  if (dir.startsWith(source + sep)) throw new OcsError('E_CONFIG', `backup: ${dir} is inside the store's directory ${source}; name a directory elsewhere`);
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new OcsError('E_CONFIG', `backup: ${dir} is not a directory`);
  if (existsSync(dir) && readdirSync(dir).length > 0) throw new OcsError('E_CONFIG', `backup: ${dir} is not empty; name a new or empty directory`);
  makeDirectory(dir);
  const partial = join(dir, `.partial-${process.pid}-${copies++}`);
  const file = join(dir, 'data.mdb');
  const started = Date.now();
  partialCopy.dir = partial;
  try {
    makeDirectory(partial);
    await copyInto(source, partial, compact);
    await withoutLease(partial);
    try {
      // Atomic, and refused if the file exists: a backup racing this one keeps its copy.
      linkSync(join(partial, 'data.mdb'), file);
    } catch (err) {
      throw new Error(`backup: ${file} ${(err as NodeJS.ErrnoException).code === 'EEXIST' ? 'was written by another backup meanwhile' : `could not be written: ${(err as Error).message}`}`, { cause: err });
    }
    return { file, bytes: statSync(file).size, ms: Date.now() - started };
  } finally {
    rmSync(partial, { recursive: true, force: true });
    partialCopy.dir = null;
  }
}

async function copyInto(source: string, partial: string, compact: boolean): Promise<void> {
  const root = open({ path: source, readOnly: true, noSubdir: false });
  try {
    // The store is a directory (noSubdir: false): LMDB writes data.mdb into the one it is given.
    await root.backup(partial, compact);
  } catch (err) {
    throw new Error(`backup: copying into ${partial} failed, the partial copy removed: ${(err as Error).message}`, { cause: err });
  } finally {
    await root.close();
  }
}

/** The copy without the live server's lease: a server started on it would wait for that process (leases.ts). */
async function withoutLease(partial: string): Promise<void> {
  const root = open({ path: partial, noSubdir: false, maxDbs: 8 });
  try {
    await forgetLeaseRecords(root);
  } finally {
    await root.close();
  }
}

/**
 * A consistent copy of the store while the server runs: LMDB copies the environment inside one
 * read transaction (mdb_env_copy2), so writers go on meanwhile and the copy is the store as of
 * one commit. Opened read-only, so it neither writes to the store nor touches its lease.
 */
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { makeDirectory } from '../util/make-dir.js';
import { join, resolve } from 'node:path';
import { open } from 'lmdb';
import { OcsError } from '../protocol/errors.js';

export interface BackupResult {
  /** The copy: TARGET/data.mdb, a store directory of its own (store.data_dir can point at TARGET). */
  file: string;
  bytes: number;
  ms: number;
}

/** Copies the store in `dataDir` into the directory `target` (created; it must not hold a store already). */
export async function backupStore(dataDir: string, target: string, compact = false): Promise<BackupResult> {
  const source = resolve(dataDir);
  if (!existsSync(join(source, 'data.mdb'))) throw new OcsError('E_CONFIG', `backup: no store in ${source} (store.data_dir): nothing to copy`);
  const dir = resolve(target);
  if (dir === source) throw new OcsError('E_CONFIG', 'backup: the target is the store itself');
  if (existsSync(dir) && readdirSync(dir).length > 0) throw new OcsError('E_CONFIG', `backup: ${dir} is not empty; name a new or empty directory`);
  makeDirectory(dir);
  const file = join(dir, 'data.mdb');
  const started = Date.now();
  const root = open({ path: source, readOnly: true, noSubdir: false });
  try {
    // The store is a directory (noSubdir: false): LMDB writes data.mdb into the one it is given.
    await root.backup(dir, compact);
  } catch (err) {
    // A copy cut short (no space left) is a truncated store that still opens: not left to be taken for a backup.
    rmSync(file, { force: true });
    throw new Error(`backup: copying into ${dir} failed, the partial copy removed: ${(err as Error).message}`, { cause: err });
  } finally {
    await root.close();
  }
  return { file, bytes: statSync(file).size, ms: Date.now() - started };
}

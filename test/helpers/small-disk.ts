/**
 * A real full disk for tests: a tmpfs of a few MiB mounted on a fresh directory (needs root,
 * or CAP_SYS_ADMIN). Where it cannot be mounted, `mountSmallDisk` returns the reason instead,
 * and the tests that need it skip with that reason (loudly: they are not run).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SmallDisk {
  dir: string;
  /** Gives the file system `size` (e.g. '64m'): space returns. */
  grow(size: string): void;
  unmount(): void;
}

/** A tmpfs of `size` (e.g. '2m'), or why there is none. */
export function mountSmallDisk(size: string): SmallDisk | string {
  const dir = mkdtempSync(join(tmpdir(), 'ocs-small-disk-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (err) {
    rmdirSync(dir);
    const reason = `cannot mount a ${size} tmpfs (needs root): ${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim()}`;
    console.warn(`SKIPPING the full-disk tests: ${reason}`);
    return reason;
  }
  let mounted = true;
  return {
    dir,
    grow(newSize: string) {
      execFileSync('mount', ['-o', `remount,size=${newSize}`, dir], { stdio: 'pipe' });
    },
    unmount() {
      if (!mounted) return;
      mounted = false;
      execFileSync('umount', [dir], { stdio: 'pipe' });
      rmdirSync(dir);
    },
  };
}

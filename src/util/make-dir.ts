/**
 * mkdir -p, one level at a time. Node's mkdirSync(path, { recursive: true }) never returns for
 * a path under /proc (it loops at full CPU: a data_dir of /proc/x hung the server's start, and
 * SIGINT with it); a plain mkdir of each missing level fails there with a code instead.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

export function makeDirectory(path: string): void {
  const target = resolve(path);
  const missing: string[] = [];
  for (let dir = target; !existsSync(dir); dir = dirname(dir)) {
    missing.push(dir);
    if (dirname(dir) === dir) break;
  }
  for (let i = missing.length - 1; i >= 0; i--) mkdirSync(missing[i]!);
}

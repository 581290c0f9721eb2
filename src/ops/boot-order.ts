/**
 * Which other sysctl files set our keys after our drop-in at boot: systemd-sysctl (and
 * `sysctl --system`) reads the files of /etc/sysctl.d, /run/sysctl.d and /usr/lib/sysctl.d in
 * the order of their names, a later one winning, and Debian's 99-sysctl.conf is /etc/sysctl.conf.
 * A value of ours that such a file sets again is undone at every boot, silently; the tool says so.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';

export interface BootOverride {
  file: string;
  key: string;
  value: string;
}

/** The lines of files read after `ourFile` (a path under `etcRoot`) that set one of `keys` to something else than `ours`. */
export function overriddenAtBoot(etcRoot: string, ourFile: string, ours: ReadonlyMap<string, string>): BootOverride[] {
  const ourName = basename(ourFile);
  const byName = new Map<string, string>();
  // /etc wins over /run over /usr/lib for files of the same name; only /etc's root is known here.
  for (const dir of [join(etcRoot, '..', 'usr', 'lib', 'sysctl.d'), join(etcRoot, '..', 'run', 'sysctl.d'), join(etcRoot, 'sysctl.d')]) {
    for (const name of list(dir)) if (name.endsWith('.conf')) byName.set(name, join(dir, name));
  }
  const later = [...byName.entries()].filter(([name]) => name > ourName).sort(([a], [b]) => (a < b ? -1 : 1)).map(([, path]) => path);
  // Debian links 99-sysctl.conf to it; elsewhere `sysctl --system` reads it last.
  if (!later.some((path) => basename(path) === '99-sysctl.conf')) later.push(join(etcRoot, 'sysctl.conf'));
  const found: BootOverride[] = [];
  for (const file of later) {
    for (const line of readOrEmpty(file).split('\n')) {
      const match = /^\s*-?([\w./-]+)\s*=\s*(.*?)\s*$/.exec(line);
      if (match === null) continue;
      const key = match[1]!.replace(/\//g, '.');
      const mine = ours.get(key);
      if (mine !== undefined && match[2]!.split(/\s+/).join(' ') !== mine) found.push({ file, key, value: match[2]! });
    }
  }
  return found;
}

function list(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** A file's text, or '' when it cannot be read (absent, a directory, no permission). */
export function readOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/**
 * The start-up check: past its open-file limit the server cannot accept another socket
 * (EMFILE), however far below max_connections it is. The server first raises its own limit
 * where it may (pm2 has no option for it, and its instances inherit the pm2 daemon's limit),
 * then warns once, with the fix, rather than let it show up later as refused connections.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Logger } from '../util/logger.js';
import { readOpenFileLimit } from './host.js';
import { openFilesNeeded } from './sysctl.js';

/**
 * Raises this process's open-file limit (soft and hard) to what max_connections needs, within
 * fs.nr_open, with `prlimit` (util-linux; Node has no setrlimit). Raising the hard limit needs
 * root or CAP_SYS_RESOURCE: without them it stays as it is, and the warning below follows.
 */
export function raiseOpenFileLimit(maxConnections: number, log: Logger, procRoot = '/proc'): void {
  const limit = readOpenFileLimit(procRoot);
  const needed = openFilesNeeded(maxConnections);
  if (limit === null || limit.soft >= needed) return;
  const ceiling = readNumber(`${procRoot}/sys/fs/nr_open`) ?? needed;
  const target = Math.min(Math.max(needed, limit.soft), ceiling);
  const hard = Math.max(target, limit.hard);
  const result = spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${target}:${Number.isFinite(hard) ? hard : 'unlimited'}`], { encoding: 'utf8', timeout: 5000 });
  const now = readOpenFileLimit(procRoot);
  if (now !== null && now.soft > limit.soft) log.info({ from: limit.soft, to: now.soft, needed }, 'raised the open-file limit for max_connections');
  else log.debug({ status: result.status, error: result.error?.message, stderr: result.stderr }, 'could not raise the open-file limit');
}

export function warnIfFewOpenFiles(maxConnections: number, log: Logger, procRoot = '/proc'): void {
  const limit = readOpenFileLimit(procRoot);
  const needed = openFilesNeeded(maxConnections);
  if (limit === null || limit.soft >= needed) return;
  log.warn(
    {
      soft: limit.soft,
      hard: limit.hard,
      needed,
      max_connections: maxConnections,
      // The server raised what it could: it is the hard limit it inherits that must go up.
      fix:
        `raise the open-file limit to ${needed}: \`ulimit -n ${needed}\` in the shell that starts the server (or pm2), ` +
        `LimitNOFILE=${needed} in the systemd unit of the pm2 daemon, or \`npm run tune-sysctl -- --apply\` as root ` +
        '(writes /etc/security/limits.d/ocs-realtime.conf for new login sessions)',
    },
    'open-file limit too low for max_connections',
  );
}

function readNumber(file: string): number | null {
  try {
    const value = Number(readFileSync(file, 'utf8').trim());
    return Number.isFinite(value) && value > 0 ? value : null;
  } catch {
    return null;
  }
}

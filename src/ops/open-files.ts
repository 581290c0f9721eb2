/**
 * The start-up check: past its open-file limit the server cannot accept another socket
 * (EMFILE), however far below max_connections it is. Warn once, with the fix, rather than
 * let it show up later as refused connections.
 */
import type { Logger } from '../util/logger.js';
import { readOpenFileLimit } from './host.js';
import { openFilesNeeded } from './sysctl.js';

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
      // Node raises the soft limit to the hard one at start, so it is the hard limit that must go up.
      fix:
        `raise the open-file limit to ${needed}: \`ulimit -n ${needed}\` in the shell that starts the server (or pm2), ` +
        `LimitNOFILE=${needed} in the systemd unit of the pm2 daemon, or \`npm run tune-sysctl -- --apply\` as root ` +
        '(writes /etc/security/limits.d/ocs-realtime.conf for new login sessions)',
    },
    'open-file limit too low for max_connections',
  );
}

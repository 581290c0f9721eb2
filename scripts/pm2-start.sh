#!/bin/sh
# What pm2 runs (ecosystem.config.cjs, interpreter 'none'): pm2 has no option for resource
# limits, so this raises the hard open-file limit as far as the kernel allows (fs.nr_open),
# then becomes the server (exec: pm2's signals reach node directly). Raising the hard limit
# needs root or CAP_SYS_RESOURCE; without them it stays what the pm2 daemon has, and the
# server logs a warning at start when that is too low for max_connections. Node raises the
# soft limit to the hard one itself.
if [ -r /proc/sys/fs/nr_open ]; then
  ulimit -H -n "$(cat /proc/sys/fs/nr_open)" 2>/dev/null
fi
exec node "$(dirname "$0")/../dist/src/main.js" "$@"

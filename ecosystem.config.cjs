// pm2 start ecosystem.config.cjs
// One process per host: its primary thread runs one uWS acceptor shard per core on the same
// port, so pm2 runs a single fork-mode instance (cluster mode would put a second layer of
// load balancing in front of SO_REUSEPORT for nothing).
//
// Open files: the server needs about 2 x max_connections descriptors (it logs a warning with
// the number at start when its limit is lower). pm2 has no rlimit option and its processes
// inherit the pm2 daemon's limit, so:
// - scripts/pm2-start.sh raises the hard limit to fs.nr_open before it becomes the server;
//   that works when pm2 runs as root (with CAP_SYS_RESOURCE), not for an ordinary user.
// - Otherwise raise the daemon's own limit: `pm2 startup` writes a systemd unit with
//   LimitNOFILE=infinity (set LimitNOFILE=N yourself in a unit you wrote); a daemon started
//   by hand takes the shell's limit, so run `ulimit -n N` before the first `pm2 start`
//   (`pm2 kill` first if a daemon is already running).
// - `npm run tune-sysctl -- --apply` (as root) writes /etc/security/limits.d/ocs-realtime.conf,
//   which gives new login sessions the limit (not systemd services), and fs.nr_open to allow it.
//
// Several instances on one host (cluster mode, README "Cluster mode"): each process is a node
// of a cluster on one Redis, and they all share the port (SO_REUSEPORT across processes too).
// Give each its share of the cores and the same Redis, e.g. two instances on 8 cores:
//   exec_mode: 'fork', instances: 2,
//   env: { ..., WEBSOCKET_SHARDS: '4', WEBSOCKET_REDIS_URL: 'redis://:PASSWORD@127.0.0.1:6379' },
// (rediss:// for TLS). Nothing else changes: in cluster mode the store is Redis, not ./data.
module.exports = {
  apps: [
    {
      name: 'ocs-realtime',
      script: 'scripts/pm2-start.sh',
      // Run the wrapper itself (pm2 would otherwise hand it to node, or give sh the node_args).
      interpreter: 'none',
      args: '--config config/performance_config.yaml',
      exec_mode: 'fork',
      instances: 1,
      env: {
        NODE_ENV: 'production',
        NODE_OPTIONS: '--max-old-space-size=4096',
        // Set these in the real environment (never commit a secret):
        // WEBSOCKET_AUTH_SECRET: '...',
        WEBSOCKET_ALLOW_ANONYMOUS: 'false',
      },
      // SIGTERM → close every socket with 1001 → exit 0 within shutdown_timeout (10 s).
      kill_timeout: 12000,
      // `ready` is logged once every shard listens.
      wait_ready: false,
      listen_timeout: 10000,
      max_restarts: 20,
      restart_delay: 1000,
      merge_logs: true,
      time: false,
    },
  ],
};

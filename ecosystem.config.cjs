// pm2 start ecosystem.config.cjs
// One process per host: its primary thread runs one uWS acceptor shard per core on the same
// port, so pm2 runs a single fork-mode instance (cluster mode would put a second layer of
// load balancing in front of SO_REUSEPORT for nothing).
module.exports = {
  apps: [
    {
      name: 'ocs-realtime',
      script: 'dist/src/main.js',
      args: '--config config/performance_config.yaml',
      exec_mode: 'fork',
      instances: 1,
      node_args: '--max-old-space-size=4096',
      env: {
        NODE_ENV: 'production',
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

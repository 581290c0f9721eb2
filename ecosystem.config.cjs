// `npx pm2 start ecosystem.config.cjs` runs the server built by `npm install`; set the JWT
// secret in the environment of that command (WEBSOCKET_AUTH_SECRET=... npx pm2 start ...):
// without one the server starts but refuses every client, and says so in `npx pm2 logs`.
// `npm run reload` hands over to a new process without a gap once the config passes a check
// (a plain `npx pm2 reload` onto a config that exits 2 stops the server: README, Operations).
// TLS on the server's own port (README, TLS): env WEBSOCKET_TLS_CERT_FILE and
// WEBSOCKET_TLS_KEY_FILE (PEM paths); a reload reads a renewed certificate.
//
// Several instances on one host (cluster mode, README "Cluster mode"): each process is a node
// of a cluster on one Redis, and they all share the port (SO_REUSEPORT across processes too).
// Give each its share of the cores and the same Redis, e.g. two instances on 8 cores:
//   instances: 2,
//   env: { ..., WEBSOCKET_SHARDS: '4', WEBSOCKET_REDIS_URL: 'redis://:PASSWORD@127.0.0.1:6379' },
// (rediss:// for TLS). Nothing else changes: in cluster mode the store is Redis, not ./data,
// and a reload replaces the instances one by one, each draining as below (a node leaves the
// cluster as its drain begins; what comes for its users waits in Redis for their reconnection).
module.exports = {
  apps: [
    {
      name: 'ocs-realtime',
      // The server, as `npm start` runs it (built into dist/ by `npm install`, `npm run build`).
      script: 'dist/src/main.js',
      args: '--config config/performance_config.yaml',
      // Relative paths (the config above, store.data_dir ./data) are from this folder, wherever
      // pm2 was started from.
      cwd: __dirname,
      // Cluster mode for its reload: pm2 starts the new process, waits for its `ready`, and only
      // then stops the old one (in fork mode a reload is a stop, then a start: a gap). The
      // server listens through uWS on its own sockets, not through node's cluster module, so
      // pm2's balancer never sees a connection: during the overlap both processes bind the port
      // with SO_REUSEPORT and the kernel hands new connections to whichever still listens.
      exec_mode: 'cluster',
      // One process per host: it runs one acceptor thread per core itself (server.shards), and
      // a second process would only split the connections and the broker's view of them.
      instances: 1,
      // The server sends `ready` to pm2 once every shard listens (and logs it).
      wait_ready: true,
      // Longest wait for that `ready` (a large store loads first); pm2 goes on without it after.
      listen_timeout: 30000,
      // SIGINT (what pm2 sends to stop or reload) drains: stop accepting, let the deliveries in
      // flight be acknowledged (<= 1 s), close every connection with 1012 spread over
      // server.drain_window (2 s), hand the store over, exit 0 within server.shutdown_timeout
      // (10 s). pm2 sends SIGKILL after kill_timeout: keep it above shutdown_timeout.
      kill_timeout: 15000,
      // A bad config exits 2: restarting cannot fix it, so pm2 stops instead of looping.
      stop_exit_codes: [2],
      max_restarts: 20,
      restart_delay: 1000,
      // The heap of the primary thread (the broker's in-memory index of stored messages), and
      // V8's memory reducer off from the start: pm2's own code loads before the server's, which
      // turns it off itself (src/ops/memory-reducer-off.ts) for the threads it starts.
      node_args: ['--max-old-space-size=4096', '--no-memory-reducer'],
      env: {
        // Refuses anonymous `?user=` clients (README, Authentication).
        NODE_ENV: 'production',
      },
      // One log file for the app, not one per instance id; pino's lines carry their own time.
      merge_logs: true,
      time: false,
      // Open files: the server needs about 2 x max_connections descriptors and raises its own
      // limit at start where it may (as root with CAP_SYS_RESOURCE; pm2 has no option for it and
      // its processes inherit the pm2 daemon's limit). Otherwise it logs `open-file limit too low
      // for max_connections` with the number: raise the daemon's limit, i.e. `npx pm2 startup`
      // writes a systemd unit with LimitNOFILE=infinity, or run `ulimit -n N` before the first
      // `npx pm2 start` (`npx pm2 kill` first if a daemon already runs). `npm run tune-sysctl`
      // checks the kernel's side (fs.nr_open, fs.file-max, the listen backlogs).
    },
  ],
};

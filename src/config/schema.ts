/**
 * The configuration schema: every key, its type, its default. config/performance_config.yaml
 * documents each key; a test checks the two agree. Objects are strict, so a misspelt key is an
 * error that names itself instead of a setting silently ignored. websocket.delivery is in
 * delivery-schema.ts, the value types every section shares in value-types.ts.
 */
import { z } from 'zod';
import { GROUP_PATTERN } from '../protocol/frames.js';
import { delivery } from './delivery-schema.js';
import { nonNegativeInt, positiveInt, seconds, timerSeconds } from './value-types.js';

/** Where the server listens unless configured otherwise; tools that reach it use the same. */
export const DEFAULT_PORT = 8765;
export const DEFAULT_PATH = '/ws';

const server = z
  .object({
    host: z.string().min(1).default('0.0.0.0'),
    /** Reverse proxies whose X-Forwarded-For names the client for the per-address limits (client-address.ts). */
    trusted_proxies: z.array(z.string().ip()).max(100).default([]),
    port: z.number().int().min(0).max(65535).default(DEFAULT_PORT),
    /** 0 means one shard per whole CPU the process may use: its affinity, or its cgroup's quota when smaller (src/util/cpus.ts). */
    shards: nonNegativeInt.max(256).default(0),
    path: z.string().regex(/^\/[^?#\s]*$/, 'must be a path: start with / and hold no ?, # or spaces').default(DEFAULT_PATH),
    /** Bounded so that the file limits derived from it (tune-sysctl, the start-up check) stay integers the kernel takes: its nr_open tops out near 2^30. */
    max_connections: positiveInt.max(10_000_000).default(2000),
    /** Seconds between server pings to each connection. */
    ping_interval: timerSeconds.default(20),
    /** Seconds without any inbound traffic (frames or pongs) before a connection is closed. */
    idle_timeout: timerSeconds.default(60),
    /** Largest accepted client frame, bytes. */
    max_payload: positiveInt.min(1024).max(64 * 1024 * 1024).default(64 * 1024),
    /** Bytes buffered for one connection before it is closed as a slow consumer (1013). */
    max_backpressure: positiveInt.min(1024).default(1024 * 1024),
    /** Seconds between slow-consumer sweeps. */
    backpressure_check_interval: timerSeconds.positive().default(0.25),
    /**
     * Seconds from SIGTERM/SIGINT until the process must have exited. At least 5: uWS releases
     * a socket whose peer ignores the close handshake only after about 4 s, and a thread may
     * not exit before.
     */
    shutdown_timeout: timerSeconds.min(5).default(10),
    /**
     * Seconds over which a drain (SIGTERM, SIGINT, pm2 reload) closes the connections with 1012,
     * evenly, so that their reconnections reach the next process spread out rather than at once.
     * 0: all at once. shutdown_timeout must leave 5 s more for the close handshakes.
     */
    drain_window: seconds.max(600).default(2),
    /** Seconds a connection may stay unauthenticated waiting for its `auth` frame. */
    auth_timeout: timerSeconds.positive().default(10),
    /** wss:// and https:// on the same port when cert_file and key_file are set (checked at start-up: src/config/tls-files.ts). */
    tls: z
      .object({
        cert_file: z.string().default(''),
        key_file: z.string().default(''),
        passphrase: z.string().default(''),
      })
      .strict()
      .default({}),
  })
  .strict();

const auth = z
  .object({
    /** HS256 secret for JWTs. Empty: tokens cannot be verified, so only anonymous users connect. */
    secret: z.string().default(''),
    /**
     * Accept `?user=ID` without a token (development only). `auto`: only while no secret is
     * set, so that setting a secret turns anonymous mode off unless it is enabled explicitly.
     */
    allow_anonymous: z.union([z.boolean(), z.literal('auto')]).default('auto'),
    /** Allow anonymous mode even with NODE_ENV=production. */
    force_anonymous_in_production: z.boolean().default(false),
    /**
     * With a secret set too (jwt+anonymous): the groups (names, `prefix*` patterns, `*` for all)
     * anonymous users may join, publish and send `any` to, and read the history and presence
     * of; none by default, so that no anonymous client reads a verified user's group. Without a
     * secret, anonymous users are everyone and may use every group.
     */
    anonymous_groups: z.array(z.string().regex(GROUP_PATTERN, 'a group name or a prefix* pattern, e.g. guests.*')).max(1000).default([]),
    /** Accepted clock skew when checking `exp`/`nbf`, seconds. */
    clock_tolerance: seconds.default(5),
    /** Expected `iss` and `aud`; empty means not checked. */
    issuer: z.string().default(''),
    audience: z.string().default(''),
    /** Refuse tokens without an `exp` claim: a token that never expires cannot be revoked. */
    require_exp: z.boolean().default(true),
    /**
     * Longest a connection may live on one token, seconds, whatever its `exp` says (0: `exp`
     * alone decides). An `auth` frame with a fresh token of the same `sub` extends it.
     */
    max_lifetime: seconds.default(0),
  })
  .strict()
  // Resolved here, once, so that nothing downstream mistakes the truthy 'auto' for true.
  .transform((auth) => ({ ...auth, allow_anonymous: auth.allow_anonymous === 'auto' ? auth.secret === '' : auth.allow_anonymous }));

const limits = z
  .object({
    /** Sustained client frames per second per connection; 0 disables the limit. */
    messages_per_second: nonNegativeInt.default(100),
    /** Frames a connection may send in a burst above the sustained rate. */
    burst: positiveInt.default(200),
    /** Rate-limited frames before the connection is closed with 4029. */
    rate_violations_before_close: positiveInt.default(20),
    /** Bad frames before the connection is closed with 4400. */
    bad_frames_before_close: positiveInt.default(10),
    max_groups_per_connection: positiveInt.default(1000),
    /**
     * Per client address, for the whole server (each shard enforces its share): connection
     * attempts per second sustained (0: unlimited) and the burst above it, sockets that may
     * wait for their `auth` frame at once, and connections open at once (0: unlimited). Over
     * them: HTTP 429. The defaults leave room for an office of a thousand users behind one NAT
     * address.
     */
    connection_attempts_per_ip: z.number().finite().nonnegative().default(100),
    connection_burst_per_ip: positiveInt.default(1000),
    unauthenticated_per_ip: nonNegativeInt.default(200),
    max_connections_per_ip: nonNegativeInt.default(0),
    /** IPv6 clients count as one address per prefix of this many bits (a subscriber's /64); 128: per address. */
    ipv6_prefix_length: z.number().int().min(32).max(128).default(64),
    /** Connections one user may hold at once (over every node in cluster mode); over it E_RATE_LIMITED, 4029. 0: unlimited. */
    max_connections_per_user: nonNegativeInt.default(100),
    /**
     * Per client address, for the whole server: HTTP requests other than WebSocket upgrades
     * (/health, /metrics, /stats, /dashboard, /admin) per second sustained (0: unlimited) and the
     * burst above it; over them HTTP 429. A scraper, a load balancer's checks and a few open
     * dashboards need a few a second.
     */
    http_requests_per_ip: z.number().finite().nonnegative().default(100),
    http_burst_per_ip: positiveInt.default(200),
    /** Addresses each shard tracks at once; when all are busy, a new address gets HTTP 503. */
    max_tracked_ips: positiveInt.default(100_000),
  })
  .strict();

const groups = z
  .object({
    /** `pub` (and later `any`) only to groups the connection has joined (E_NOT_MEMBER). */
    require_membership: z.boolean().default(true),
  })
  .strict();

const performance = z
  .object({
    /** permessage-deflate for clients that offer it, applied to frames of at least compression_threshold bytes. */
    enable_compression: z.boolean().default(true),
    compression_threshold: positiveInt.default(1024),
    /**
     * Pool connections across acceptor threads (SO_REUSEPORT, one shard per core). false runs a
     * single acceptor whatever `server.shards` says.
     */
    enable_connection_pooling: z.boolean().default(true),
    /** Most messages in one `batch` frame. */
    batch_size: positiveInt.max(10_000).default(50),
    /** Bytes of each shard-to-shard ring (rounded up to a power of two). */
    ring_bytes: positiveInt.min(64 * 1024).max(1024 * 1024 * 1024).default(4 * 1024 * 1024),
    /** Bytes a shard may hold for a full ring before refusing publishes with E_OVERLOADED. */
    ring_overflow_bytes: positiveInt.default(16 * 1024 * 1024),
    /**
     * ocs.v1.msgpack frames whose MessagePack body is at least this many bytes are sent
     * LZ4-compressed when enable_compression is on and compressing makes them smaller.
     */
    lz4_threshold: nonNegativeInt.default(1024),
    /**
     * A group message's binary frame (of up to 16 KiB) is compressed with LZ4 high compression
     * (an ordinary LZ4 block, 4-13% smaller on chat text, about 5x the CPU) when at least this
     * many msgpack members on the shard receive it: it is compressed once for all of them. 0: never.
     */
    lz4_hc_min_recipients: nonNegativeInt.default(256),
    /** Threads of each thread's codec pool (every shard, and the primary for exports); 0: no pool, all codec work inline. */
    codec_pool_size: nonNegativeInt.max(64).default(1),
    /** Codec tasks one pool may have in flight; beyond it the work runs inline (slower, never dropped). */
    codec_queue_limit: positiveInt.default(64),
    /**
     * How much lower the pool's threads run than the rest of the server (nice increment, 0-19):
     * on a machine with fewer free cores than busy threads, a pool thread then yields its core to
     * a shard's loop as soon as the loop has work, which is the point of offloading.
     */
    codec_pool_nice: nonNegativeInt.max(19).default(10),
    /**
     * Client frames (a compressed one by the size it declares), stored backlogs and exports of
     * at least this many bytes are decoded and encoded in the codec pool instead of on the
     * thread's loop. 64 KiB: where the pool's small-message P99 came out below inline's; below
     * it the hand-over's CPU grows (+38-112%) for no gain measured (npm run bench:codec, README).
     */
    codec_offload_threshold: positiveInt.default(64 * 1024),
  })
  .strict();

/** Thresholds of the alerts (src/metrics/alerts.ts); the defaults are the seed document's. */
const alerts = z
  .object({
    enabled: z.boolean().default(true),
    /** Merged P95 / P99 over one interval of the pub and of the send latency, ms. */
    latency_p95_ms: z.number().finite().positive().default(100),
    latency_p99_ms: z.number().finite().positive().default(200),
    /** Process CPU time over the interval, as a share of the CPUs it may use (its affinity, or its cgroup's quota when smaller). */
    cpu_percent: z.number().finite().positive().default(80),
    /** Resident memory as a share of the cgroup memory limit, else of the host's memory. */
    memory_percent: z.number().finite().positive().default(85),
    /** Errors counted / frames received over the interval. */
    error_rate_percent: z.number().finite().positive().default(5),
    /** Stored messages not yet acknowledged (the broker's queues, all recipients). */
    queue_depth: positiveInt.default(1000),
    /** The file system holding store.data_dir, share in use (as df shows it). */
    disk_used_percent: z.number().positive().max(100).default(90),
    /** Latency and error-rate alerts need this many samples (frames) in an interval; fewer read as clear. */
    min_samples: nonNegativeInt.default(20),
    /** Hysteresis: an alert clears once its value is below threshold × this. */
    clear_ratio: z.number().gt(0).max(1).default(0.9),
    /** Raised/cleared events kept for GET /alerts. */
    history: positiveInt.max(10_000).default(100),
  })
  .strict();

const monitoring = z
  .object({
    /** Histograms, the /metrics exposition, latency in /stats, alerts and rates; false: counters only. */
    enable_metrics_collection: z.boolean().default(true),
    /** Seconds between samples: counter rates, each thread's histogram report, /metrics and /stats renders, alerts. */
    metrics_collection_interval: timerSeconds.min(0.05).default(1),
    /** Seconds between `stats` log lines; 0 disables them. */
    log_interval: timerSeconds.default(60),
    /** Bearer token for /metrics, /stats and /alerts; empty: they answer anyone (they hold no user ids, group names or content). */
    token: z.string().default(''),
    alerts: alerts.default({}),
    /** File the primary appends the overview to once per interval (JSON lines, as `npm run report --format json`); empty: none. */
    export_file: z.string().default(''),
    /** The export file is rotated when the next line would take it past this size, bytes. */
    export_max_bytes: positiveInt.min(1024).default(10 * 1024 * 1024),
    /** Rotated export files kept (FILE.1 newest .. FILE.N); 0: the file starts over. */
    export_keep: nonNegativeInt.max(100).default(5),
    /** Seconds a ring may hold records without draining before /health says degraded. */
    link_stuck_after: timerSeconds.positive().default(5),
  })
  .strict();


/**
 * Groups that keep their last messages (docs/PROTOCOL.md, History): the first entry whose
 * pattern matches a group decides. `size`: messages kept per group; `ttl`: seconds each is
 * kept (0: until `size` or `history.max_bytes` pushes it out).
 */
const historyPattern = z
  .object({
    pattern: z.string().regex(GROUP_PATTERN, 'a group name or a prefix* pattern, e.g. room.*'),
    size: positiveInt.max(100_000),
    ttl: seconds.default(0),
  })
  .strict();

/** Who is in a group (the `presence` op and events). */
const presence = z
  .object({
    /** Largest group whose `presence` answer lists its users; larger ones (and `counts: true`) get the totals only. */
    max_list: positiveInt.max(10_000).default(1000),
    /** Seconds over which a group's joins and leaves are coalesced into one event (a user who comes and goes within it: none). */
    window: z.number().min(0).max(10).default(0.2),
  })
  .strict();

const admin = z
  .object({
    /** Bearer token for /admin/*; empty: /admin/* answers loopback clients only. */
    token: z.string().default(''),
  })
  .strict();

const store = z
  .object({
    /** LMDB environment directory (created if missing); relative paths are from the working directory. */
    data_dir: z.string().min(1).default('./data'),
    /** When a write counts as stored: full = fsync'd, overlapping = lmdb overlapping sync, none = no fsync. */
    sync: z.enum(['full', 'overlapping', 'none']).default('full'),
    /**
     * Most messages stored at once (waiting, scheduled or awaiting an ack); over it send/any get
     * E_QUEUE_FULL. Bounds the broker's memory: each one keeps its metadata in the primary's
     * heap, about 0.75 KB when every message has a recipient of its own (less when they share).
     */
    max_messages: positiveInt.default(500_000),
    /** Most bytes of message data stored at once; over it send/any get E_QUEUE_FULL. Bounds the disk. */
    max_bytes: positiveInt.default(1024 * 1024 * 1024),
    /**
     * Most dead letters kept (LMDB or, in a cluster, Redis); past it the letters that failed
     * first are dropped (counted: ocs_messages_dead_dropped_total). Without a bound a client
     * could grow the dead letters for ever (LOW sends to a full recipient push its oldest out).
     */
    max_dead_letters: positiveInt.default(100_000),
    /** Most bytes of data in the dead letters; past it, as max_dead_letters. */
    max_dead_letter_bytes: positiveInt.default(256 * 1024 * 1024),
  })
  .strict();

/**
 * Cluster mode (src/cluster): with a `redis_url` this process is one node of a cluster on that
 * Redis; pubs, sends, anys and presence cross nodes, and the durable store is Redis instead of
 * LMDB. Empty (the default): one process on its embedded LMDB store, no Redis.
 */
function isRedisUrl(text: string): boolean {
  if (!/^rediss?:\/\/\S+$/.test(text)) return false;
  try {
    const url = new URL(text);
    return url.hostname !== '' && /^(\/\d*)?$/.test(url.pathname);
  } catch {
    return false;
  }
}

const cluster = z
  .object({
    /** redis://[:password@]host:port[/db] or rediss:// (TLS); env WEBSOCKET_REDIS_URL. Empty: not a cluster. */
    redis_url: z
      .string()
      .default('')
      // Parsed here, where the message can name the key; never echoed (it may hold a password).
      .refine((url) => url === '' || isRedisUrl(url), 'must be redis://[:password@]host[:port][/db] or rediss://... (a URL; the value is not shown, it may hold a password)'),
    /** Every Redis key and channel of this cluster starts with it: clusters (or tests) sharing one Redis stay apart. */
    key_prefix: z.string().min(1).max(64).regex(/^[A-Za-z0-9_.:-]+$/).default('ocs:'),
    /** Seconds without a heartbeat after which a node (and its users' presence) is forgotten by the others. */
    presence_ttl: z.number().min(1).max(3600).default(15),
    /** Seconds between looks at the messages that fell due (scheduled, unacknowledged, expired) in the Redis store. */
    sweep_interval: z.number().min(0.02).max(10).default(0.25),
    /** Longest wait between two reconnection attempts to Redis, seconds (the wait doubles from 50 ms up to it). */
    reconnect_max_delay: z.number().min(0.05).max(60).default(2),
    /** Seconds a Redis command may take before it counts as failed (the node then reports Redis unreachable). */
    command_timeout: z.number().min(0.1).max(60).default(5),
  })
  .strict();

const logging = z
  .object({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .strict();

const websocket = z
  .object({
    server: server.default({}),
    auth: auth.default({}),
    limits: limits.default({}),
    groups: groups.default({}),
    performance: performance.default({}),
    monitoring: monitoring.default({}),
    delivery: delivery.default({}),
    admin: admin.default({}),
    history: z.array(historyPattern).max(1000).default([]),
    presence: presence.default({}),
  })
  .strict();

/** What every group history shares, in the broker (websocket.history says which groups keep one). */
const history = z
  .object({
    /** Keep history and each group's epoch in the store (store.data_dir), so offsets survive a restart with the same epoch. */
    persist: z.boolean().default(false),
    /** With persist, how long a reload's new process holds history ops for the old one's history (history-hold.ts); 0: never. */
    handover_wait: seconds.max(600).default(15),
    /** Groups whose history is kept at once; past it the one used least recently is forgotten (a group without members first). */
    max_groups: positiveInt.default(10_000),
    /** Bytes of kept messages over all groups; past it the oldest messages of the group published to least recently go first. */
    max_bytes: positiveInt.default(256 * 1024 * 1024),
    /** Most messages one `history` answer carries (a larger `limit` is cut to it, with `more: true`). */
    max_page: positiveInt.max(10_000).default(100),
    /**
     * Most bytes a `join` with `since` replays, and one `history` answer carries (at least one
     * message); more is `recovered: false` (the client reloads by pages). Also capped at half of
     * websocket.server.max_backpressure, so a replay never makes its own client a slow consumer.
     */
    max_replay_bytes: positiveInt.min(1024).default(256 * 1024),
  })
  .strict();

export const configSchema = z
  .object({
    websocket: websocket.default({}),
    store: store.default({}),
    history: history.default({}),
    cluster: cluster.default({}),
    logging: logging.default({}),
  })
  .strict();

export type Config = z.infer<typeof configSchema>;

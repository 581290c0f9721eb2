/**
 * The kernel and file-descriptor settings that matter for many connections: what each one
 * protects, the value recommended for a given max_connections, and how two values compare.
 * A value is the list of integers /proc/sys prints ("4096 87380 6291456"); the process's
 * open-file limit is the pair "soft hard".
 */

export type Values = readonly number[];

export interface Rule {
  /** True when `current` is at least as good as `recommended`. */
  passes(current: Values, recommended: Values): boolean;
  /** A value at least as good as both: what --apply writes, so it never lowers anything. */
  better(a: Values, b: Values): Values;
  /** The recommendation as the report shows it. */
  describe(recommended: Values): string;
}

/** Every field at least the recommended one (buffer sizes, backlogs, limits). */
const atLeast: Rule = {
  passes: (current, recommended) => recommended.every((r, i) => (current[i] ?? -Infinity) >= r),
  better: (a, b) => a.map((v, i) => Math.max(v, b[i] ?? v)),
  describe: (recommended) => `>= ${recommended.join(' ')}`,
};

/** tcp_tw_reuse: 0 off, 2 loopback only (the kernel default), 1 everywhere; later is better. */
const TW_REUSE_ORDER: Values = [0, 2, 1];
const rank = (values: Values): number => TW_REUSE_ORDER.indexOf(values[0] ?? -1);
const ranked: Rule = {
  passes: (current, recommended) => rank(current) >= rank(recommended),
  better: (a, b) => (rank(a) >= rank(b) ? a : b),
  describe: (recommended) => `${recommended.join(' ')}`,
};

/** ip_local_port_range "low high": enough ports means at least as wide; better is the hull of both. */
const width = (range: Values): number => (range[1] ?? 0) - (range[0] ?? 0) + 1;
const portRange: Rule = {
  passes: (current, recommended) => width(current) >= width(recommended),
  better: (a, b) => [Math.min(a[0]!, b[0]!), Math.max(a[1]!, b[1]!)],
  describe: (recommended) => `>= ${width(recommended)} ports`,
};

export interface Setting {
  /** The sysctl name, or NOFILE for the process's open-file limit. */
  key: string;
  /** How many integers the value holds. */
  fields: number;
  rule: Rule;
  recommend(maxConnections: number): Values;
  /** What it protects and why this value, in one line. */
  why: string;
}

/** The process's open-file limit (RLIMIT_NOFILE), reported as "soft hard". */
export const NOFILE = 'nofile';

const roundUp = (value: number, step: number): number => Math.ceil(value / step) * step;

/**
 * Descriptors the server may hold: one per connection, twice over (a reconnect storm accepts
 * new sockets while the old ones are still closing), plus 1024 for the store, logs, pipes and
 * each thread's event loop; rounded up to a multiple of 1024.
 */
export function openFilesNeeded(maxConnections: number): number {
  return roundUp(maxConnections * 2 + 1024, 1024);
}

/** Queue lengths sized for every client reconnecting at once, within the kernel's usual bounds. */
const burst = (maxConnections: number): number => Math.min(65535, Math.max(4096, maxConnections));

/** Local ports needed towards one address: one per proxied or test connection, plus slack. */
const portsNeeded = (maxConnections: number): number => Math.min(64512, maxConnections + 1024);

export const PORT_RANGE = 'net.ipv4.ip_local_port_range';

export const SETTINGS: readonly Setting[] = [
  {
    key: 'net.core.somaxconn',
    fields: 1,
    rule: atLeast,
    recommend: (c) => [burst(c)],
    why: 'caps every listen() backlog; a restart makes all clients reconnect at once (uWS asks 512 per shard, a proxy in front may ask more): min(65535, max(4096, max_connections))',
  },
  {
    key: 'net.ipv4.tcp_max_syn_backlog',
    fields: 1,
    rule: atLeast,
    recommend: (c) => [burst(c)],
    why: 'half-open connections (SYN received) held during that reconnect storm before SYN cookies take over: same as somaxconn',
  },
  {
    key: PORT_RANGE,
    fields: 2,
    rule: portRange,
    recommend: (c) => [65536 - portsNeeded(c), 65535],
    why: 'each outgoing connection to one address takes a local port: a proxy in front or the load tester on this host needs one per client: width >= min(64512, max_connections + 1024); the server\'s port, when inside, goes into net.ipv4.ip_local_reserved_ports',
  },
  {
    key: 'net.ipv4.tcp_tw_reuse',
    fields: 1,
    rule: ranked,
    recommend: () => [1],
    why: 'lets those outgoing connections reuse ports still in TIME_WAIT (safe with TCP timestamps); 2 = loopback only: 1',
  },
  {
    key: 'net.core.netdev_max_backlog',
    fields: 1,
    rule: atLeast,
    recommend: (c) => [burst(c)],
    why: 'packets a CPU queues between the NIC and TCP; a broadcast to every client brings back as many ACKs at once: same as somaxconn',
  },
  {
    key: 'net.core.rmem_max',
    fields: 1,
    rule: atLeast,
    recommend: () => [6291456],
    why: 'ceiling for a receive buffer set with SO_RCVBUF (a proxy does; autotuned sockets follow tcp_rmem): the tcp_rmem maximum, fixed',
  },
  {
    key: 'net.core.wmem_max',
    fields: 1,
    rule: atLeast,
    recommend: () => [4194304],
    why: 'ceiling for a send buffer set with SO_SNDBUF: the tcp_wmem maximum, fixed',
  },
  {
    key: 'net.ipv4.tcp_rmem',
    fields: 3,
    rule: atLeast,
    recommend: () => [4096, 87380, 6291456],
    why: 'per-socket receive buffer min/default/max: the first two stay small because every connection holds one, the max lets a fast flow grow; fixed',
  },
  {
    key: 'net.ipv4.tcp_wmem',
    fields: 3,
    rule: atLeast,
    recommend: () => [4096, 16384, 4194304],
    why: 'per-socket send buffer min/default/max; a larger max only hides slow consumers from max_backpressure (the kernel holds what uWS does not count); fixed',
  },
  {
    key: 'fs.file-max',
    fields: 1,
    rule: atLeast,
    recommend: (c) => [2 * openFilesNeeded(c) + 65536],
    why: 'open files on the whole host: two servers at their limit (a pm2 reload overlaps them) plus 65536 for everything else',
  },
  {
    key: 'fs.nr_open',
    fields: 1,
    rule: atLeast,
    recommend: (c) => [openFilesNeeded(c)],
    why: 'the highest open-file limit any process may get: nofile below cannot be set above it',
  },
  {
    key: NOFILE,
    fields: 2,
    rule: atLeast,
    recommend: (c) => [openFilesNeeded(c), openFilesNeeded(c)],
    why: 'open files of one server process (soft hard; Node raises soft to hard at start): max_connections x 2 + 1024, rounded up to 1024',
  },
];

export function sameValues(a: Values, b: Values): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** "4096\t87380\t6291456\n" → [4096, 87380, 6291456], or null unless it is exactly `fields` integers. */
export function parseValues(text: string, fields: number): Values | null {
  const parts = text.trim().split(/\s+/);
  if (parts.length !== fields || !parts.every((p) => /^\d+$/.test(p))) return null;
  return parts.map(Number);
}

export function formatValues(values: Values): string {
  return values.join(' ');
}

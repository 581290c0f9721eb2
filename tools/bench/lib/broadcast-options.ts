// Command-line options of tools/bench/broadcast.ts, validated once.
import { parseArgs } from 'node:util';
import type { BroadcastOptions } from './broadcast-plan.js';
import type { Placement } from './broadcast-load-types.js';
import { DEFAULT_TARGETS, TARGET_NAMES, type TargetName } from './broadcast-targets.js';

export interface CliOptions extends BroadcastOptions {
  targets: TargetName[];
  jsonOut: string | null;
  drainS: number;
  connectConcurrency: number;
  verifyEvery: number;
  placement: Placement;
  /** Repetitions; each runs every target once. */
  repeat: number;
  /** Start the servers with node's --trace-gc and count their collections per thread. */
  traceGc: boolean;
  /** Record the scheduler's events over each window (perf sched): what the server's busiest thread waited for. */
  sched: boolean;
  /** Extra node options for every server, e.g. --cpu-prof (space-separated). */
  serverNodeArgs: string[];
  /** Seconds each core is probed for the host's noise before each run; 0: not probed. */
  noiseProbeS: number;
}

export const USAGE = `Usage: npm run bench:broadcast -- [options]
  --connections N   clients (default 2000)
  --groups N        groups; client c joins group c % N (default 20)
  --publishers N    publishing clients, spread over the groups (default 20)
  --rate N          publications per second, all publishers together (default 500: with
                    100 members per group, 50,000 deliveries/s, which one core of the
                    generator carries on a 2-core VM)
  --repeat N        repetitions, each running every target once in a rotated order; the
                    summary gives the median and spread of each figure (default 3)
  --trace-gc        run the servers with --trace-gc-nvp: collections and allocation per thread
  --sched           record the scheduler's events over each window (perf sched, root): how
                    long the server's busiest thread waited to run, what ran instead and what
                    woke it (lib/sched-trace.ts)
  --server-node-args="ARGS"  more node options for every server, space-separated
                    (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof": a profile per thread)
  --duration S      measured seconds (default 10)
  --warmup S        unmeasured seconds before (default 30: V8 has optimised the hot path by then)
  --drain S         longest wait for late deliveries after the last publication (default 2)
  --targets LIST    comma-separated, from ${TARGET_NAMES.join(',')}
                    (default ${DEFAULT_TARGETS.join(',')}); metrics-off is shards1 with
                    metrics collection off, scrape is shards1 with GET /metrics every second,
                    -history: the real server with every group keeping history,
                    baseline-worker: the baseline's server in a worker thread,
                    baseline-pings: the baseline pinging a connection after 20 s of silence
                    (the real server's ping_interval); then each real-server target is also
                    compared with it (vsBaselinePings); baseline-tls, shards1-tls: both on
                    wss:// (a certificate made for the run), shards1-tls also compared with
                    baseline-tls (vsBaselineTls); shards2-by-shard: shards2 with
                    --placement by-shard for it alone; baseline2-by-shard: baseline-pings
                    in two threads on one port, each group on one (its yardstick)
  --noise-probe S   seconds a spinning process measures, on each core, the time the host takes
                    away before each run (default 1; 0 skips it: no run is then called host-noisy)
  --json-out FILE   also write the JSON result to FILE
  --concurrency N   connections opened at once (default 200)
  --placement P     spread (default: where the kernel puts each connection) or by-shard (group g
                    lives on shard g % shards only: connections are reopened until they land there)
  --verify-every N  also JSON.parse one received frame in N to check the fast parser (default 1000, 0 = off)`;

export function parseCli(argv: string[]): CliOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      connections: { type: 'string', default: '2000' },
      groups: { type: 'string', default: '20' },
      publishers: { type: 'string', default: '20' },
      rate: { type: 'string', default: '500' },
      repeat: { type: 'string', default: '3' },
      'trace-gc': { type: 'boolean', default: false },
      sched: { type: 'boolean', default: false },
      'server-node-args': { type: 'string', default: '' },
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '30' },
      drain: { type: 'string', default: '2' },
      targets: { type: 'string', default: DEFAULT_TARGETS.join(',') },
      'json-out': { type: 'string' },
      concurrency: { type: 'string', default: '200' },
      'verify-every': { type: 'string', default: '1000' },
      placement: { type: 'string', default: 'spread' },
      'noise-probe': { type: 'string', default: '1' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.error(USAGE);
    process.exit(0);
  }
  const targets = values.targets!.split(',').map((t) => t.trim()).filter(Boolean);
  for (const t of targets) {
    if (!(TARGET_NAMES as readonly string[]).includes(t)) throw new Error(`--targets: unknown target ${t} (known: ${TARGET_NAMES.join(', ')})`);
  }
  const placement = values.placement!;
  if (placement !== 'spread' && placement !== 'by-shard') throw new Error(`--placement must be spread or by-shard, got ${placement}`);
  return {
    placement,
    connections: positiveInt('connections', values.connections!),
    groups: positiveInt('groups', values.groups!),
    publishers: positiveInt('publishers', values.publishers!),
    rate: positiveNumber('rate', values.rate!),
    durationS: positiveNumber('duration', values.duration!),
    warmupS: nonNegativeNumber('warmup', values.warmup!),
    drainS: nonNegativeNumber('drain', values.drain!),
    targets: targets as TargetName[],
    jsonOut: values['json-out'] ?? null,
    connectConcurrency: positiveInt('concurrency', values.concurrency!),
    verifyEvery: nonNegativeInt('verify-every', values['verify-every']!),
    repeat: positiveInt('repeat', values.repeat!),
    traceGc: values['trace-gc']!,
    sched: values.sched!,
    serverNodeArgs: values['server-node-args']!.split(' ').filter(Boolean),
    noiseProbeS: nonNegativeNumber('noise-probe', values['noise-probe']!),
  };
}

function positiveNumber(name: string, text: string): number {
  const value = Number(text);
  if (!(value > 0) || !Number.isFinite(value)) throw new Error(`--${name} must be a positive number, got ${text}`);
  return value;
}

function nonNegativeNumber(name: string, text: string): number {
  const value = Number(text);
  if (!(value >= 0) || !Number.isFinite(value)) throw new Error(`--${name} must be a number >= 0, got ${text}`);
  return value;
}

function positiveInt(name: string, text: string): number {
  const value = positiveNumber(name, text);
  if (!Number.isInteger(value)) throw new Error(`--${name} must be an integer, got ${text}`);
  return value;
}

function nonNegativeInt(name: string, text: string): number {
  const value = nonNegativeNumber(name, text);
  if (!Number.isInteger(value)) throw new Error(`--${name} must be an integer, got ${text}`);
  return value;
}

// Command-line options of tools/bench/broadcast.ts, validated once.
import { toolArgs, type ToolCli, type ToolOption, type ToolValues } from '../../lib/cli.js';
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

/** The load's shape, as bench:cluster takes it too. */
export const LOAD_OPTIONS = {
  connections: { type: 'int', default: 2000, min: 1, help: 'clients' },
  groups: { type: 'int', default: 20, min: 1, help: 'groups; client c joins group c % N' },
  publishers: { type: 'int', default: 20, min: 1, help: 'publishing clients, spread over the groups' },
  rate: { type: 'number', default: 500, min: 0.001, help: 'publications a second, all publishers together (500: with 100 members per group, 50,000 deliveries/s, which one core of the generator carries on a 2-core VM)' },
  duration: { type: 'number', default: 10, min: 0.001, help: 'measured seconds' },
  warmup: { type: 'number', default: 30, help: 'unmeasured seconds before (V8 has optimised the hot path by then)' },
  drain: { type: 'number', default: 2, help: 'longest wait for late deliveries after the last publication' },
} satisfies Record<string, ToolOption>;

/** The load's shape from LOAD_OPTIONS' values. */
export function loadShape(values: ToolValues<typeof LOAD_OPTIONS>): BroadcastOptions {
  return { connections: values.connections, groups: values.groups, publishers: values.publishers, rate: values.rate, durationS: values.duration, warmupS: values.warmup };
}

export const BROADCAST_CLI = {
  command: 'npm run bench:broadcast --',
  about:
    'The same fan-out load, in one run, against the single-threaded uWS baseline server and the real server with 1 and 2 shards, repeated, with the median and spread of every figure. JSON on stdout (progress on stderr); tools/bench/README.md explains its fields.',
  options: {
    ...LOAD_OPTIONS,
    repeat: { type: 'int', default: 3, min: 1, help: 'repetitions, each running every target once in a rotated order; the summary gives the median and spread of each figure' },
    'trace-gc': { type: 'boolean', help: 'run the servers with --trace-gc-nvp: collections and allocation per thread' },
    sched: { type: 'boolean', help: "record the scheduler's events over each window (perf sched, root): how long the server's busiest thread waited to run, what ran instead and what woke it" },
    'server-node-args': { type: 'string', default: '', value: '"ARGS"', help: 'more node options for every server, space-separated (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof": a profile per thread)' },
    targets: {
      type: 'names',
      known: TARGET_NAMES,
      default: DEFAULT_TARGETS.join(','),
      help:
        'servers measured. metrics-off: shards1 with metrics collection off; scrape: shards1 with GET /metrics every second; -history: every group keeping history; baseline-worker: the baseline in a worker thread; baseline-pings: the baseline pinging a connection after 20 s of silence (then each real-server target is also compared with it, vsBaselinePings); baseline-tls, shards1-tls: both on wss://; shards2-by-shard: shards2 with --placement by-shard for it alone; baseline2-by-shard: baseline-pings in two threads on one port, each group on one (its yardstick); baseline2-spread: the same two threads, each pub forwarded between them over shared-memory rings (shards2\'s yardstick)',
    },
    'noise-probe': { type: 'number', default: 1, help: 'seconds a spinning process measures, on each core, the time the host takes away before each run (0 skips it: no run is then called host-noisy)' },
    'json-out': { type: 'string', value: 'FILE', help: 'also write the JSON result to FILE' },
    concurrency: { type: 'int', default: 200, min: 1, help: 'connections opened at once' },
    placement: { type: 'choice', known: ['spread', 'by-shard'] as const, default: 'spread', help: 'spread: where the kernel puts each connection; by-shard: group g lives on shard g % shards only (connections are reopened until they land there)' },
    'verify-every': { type: 'int', default: 1000, help: 'also JSON.parse one received frame in N to check the fast parser (0: off)' },
  },
} satisfies ToolCli<Record<string, ToolOption>>;

/** The options' values as the benchmark takes them. */
export function cliOptions(values: ToolValues<(typeof BROADCAST_CLI)['options']>): CliOptions {
  return {
    ...loadShape(values),
    placement: values.placement,
    drainS: values.drain,
    targets: values.targets,
    jsonOut: values['json-out'] ?? null,
    connectConcurrency: values.concurrency,
    verifyEvery: values['verify-every'],
    repeat: values.repeat,
    traceGc: values['trace-gc'],
    sched: values.sched,
    serverNodeArgs: values['server-node-args'].split(' ').filter(Boolean),
    noiseProbeS: values['noise-probe'],
  };
}

/** The command line of tools/bench/broadcast.ts: --help and bad options answered as every tool's (tools/lib/cli.ts). */
export function parseCli(argv: string[] = process.argv.slice(2)): CliOptions {
  let options: CliOptions | undefined;
  toolArgs(BROADCAST_CLI, (values) => void (options = cliOptions(values)), argv);
  return options!;
}

// The servers the broadcast benchmark can measure, and the command line that starts each one.
import { existsSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { selfSigned, type Certificate } from '../../lib/self-signed.js';
import { harnessConfig, writeConfigFile } from '../../lib/server-config.js';
import { SERVER_MAIN } from '../../lib/server-process.js';
import type { Placement } from './broadcast-load-types.js';
import { serverPinPrefix } from './pinning.js';

export const TARGET_NAMES = ['baseline', 'shards1', 'shards2', 'metrics-off', 'scrape', 'shards1-history', 'shards2-history', 'baseline-worker', 'baseline-pings', 'baseline-tls', 'shards1-tls', 'shards2-by-shard', 'baseline2-by-shard', 'baseline2-spread'] as const;
export type TargetName = (typeof TARGET_NAMES)[number];
/**
 * What runs without --targets; metrics-off and scrape measure what the server's metrics cost,
 * the history targets what group history costs, baseline-worker what a worker thread costs
 * (the baseline's server in one, as a shard is), baseline-pings the baseline pinging its
 * connections as often as the real server does, the -tls targets the baseline and one shard
 * speaking wss:// (a self-signed certificate made for the run), shards2-by-shard two shards with
 * each group on one of them (--placement by-shard for this target alone, so that one invocation
 * compares both placements), baseline2-by-shard the baseline-pings server in two threads on one
 * port with each group on one of them (shards2-by-shard's yardstick: what two acceptor threads on
 * one core cost bare uWS), baseline2-spread the same two threads with every group's members on
 * both and each pub forwarded between them over the real server's rings (shards2's yardstick):
 * asked for by name.
 */
export const DEFAULT_TARGETS: readonly TargetName[] = ['baseline', 'shards1', 'shards2'];
/** Targets that are the real server with one shard and metrics on, differing only in the load. */
export const SCRAPED_TARGETS: readonly TargetName[] = ['scrape'];

/** The `-history` targets: every group of the benchmark (g0, g1...) keeps history, so every pub goes through the broker. */
const HISTORY = [{ pattern: 'g*', size: 1000, ttl: 0 }];

export interface PreparedTarget {
  name: TargetName;
  /** The shard count asked for. */
  shards: number;
  argv: string[];
  /** Path of the WebSocket endpoint; the user id is appended as ?user=. */
  endpoint: string;
  /** wss://: the certificate the clients trust (null: plain ws://). */
  ca: Buffer | null;
  /** Removes temporary files (the config). */
  cleanup(): void;
}

/** The targets that are the benchmark's own uWS server, not the real one (no /stats to read). */
export function isBaseline(name: TargetName): boolean {
  return name === 'baseline' || name === 'baseline-worker' || name === 'baseline-pings' || name === 'baseline-tls' || name === 'baseline2-by-shard' || name === 'baseline2-spread';
}

/** Where the target's connections go: by-shard for shards2-by-shard and baseline2-by-shard, else as --placement says. */
export function placementOf(name: TargetName, placement: Placement): Placement {
  return name === 'shards2-by-shard' || name === 'baseline2-by-shard' ? 'by-shard' : placement;
}

/** The targets that speak wss:// (their HTTP is https://, which the benchmark does not read). */
export function usesTls(name: TargetName): boolean {
  return name.endsWith('-tls');
}

let certificate: Certificate | null = null;
/** One self-signed certificate for every TLS target of this run, removed when the process exits. */
function benchCertificate(): Certificate {
  if (certificate === null) {
    const made = (certificate = selfSigned());
    process.once('exit', () => rmSync(dirname(made.certFile), { recursive: true, force: true }));
  }
  return certificate;
}

const BASELINE_SERVER = fileURLToPath(new URL('../baseline-server.js', import.meta.url));

/**
 * Returns how to start `name`, or throws when it cannot be started (the real server is not
 * built yet). `maxConnections` goes into the real server's config with headroom; `nodeArgs`
 * (e.g. --trace-gc) go to node before the script. `serverMain`: another build's server (its
 * dist/src/main.js) for a real-server target, a before and after on the same host
 * (bench:interleaved --baseline-main, bench:instructions --main).
 */
export function prepareTarget(name: TargetName, maxConnections: number, nodeArgs: string[] = [], serverMain = SERVER_MAIN): PreparedTarget {
  const pin = serverPinPrefix();
  if (isBaseline(name)) {
    return {
      name,
      shards: name === 'baseline2-by-shard' || name === 'baseline2-spread' ? 2 : 1,
      // The flag the real server sets on itself (src/ops/memory-reducer-off.ts): the baseline
      // is not to lose for want of a V8 flag.
      argv: [
        ...pin,
        process.execPath,
        '--no-memory-reducer',
        ...nodeArgs,
        BASELINE_SERVER,
        '--host',
        '127.0.0.1',
        '--port',
        '0',
        ...(name === 'baseline-worker' ? ['--worker'] : []),
        ...(name === 'baseline-pings' ? ['--pings'] : []),
        ...(name === 'baseline2-by-shard' ? ['--threads', '2', '--pings'] : []),
        ...(name === 'baseline2-spread' ? ['--threads', '2', '--spread', '--pings'] : []),
        ...(usesTls(name) ? ['--tls-cert', benchCertificate().certFile, '--tls-key', benchCertificate().keyFile] : []),
      ],
      endpoint: '/ws',
      ca: usesTls(name) ? benchCertificate().ca : null,
      cleanup: () => {},
    };
  }
  if (!existsSync(serverMain)) {
    throw new Error(`${serverMain} not found: the real server is not built (run npm run build in its checkout)`);
  }
  const shards = name === 'shards2' || name === 'shards2-history' || name === 'shards2-by-shard' ? 2 : 1;
  // The real server, tuned only as the benchmark needs: the harness defaults (a free port, no
  // per-connection rate limit) and room for every connection. metrics-off is shards1 without
  // histograms, rates and alerts (counters only); scrape is shards1 read at /metrics each second.
  const config = writeConfigFile(
    harnessConfig({
      websocket: {
        server: {
          shards,
          max_connections: Math.max(10_000, maxConnections * 2),
          ...(usesTls(name) ? { tls: { cert_file: benchCertificate().certFile, key_file: benchCertificate().keyFile } } : {}),
        },
        ...(name === 'metrics-off' ? { monitoring: { enable_metrics_collection: false } } : {}),
        ...(name.endsWith('-history') ? { history: HISTORY } : {}),
      },
    }),
  );
  return {
    name,
    shards,
    argv: [...pin, process.execPath, ...nodeArgs, serverMain, '--config', config.file],
    endpoint: '/ws',
    ca: usesTls(name) ? benchCertificate().ca : null,
    cleanup: config.remove,
  };
}

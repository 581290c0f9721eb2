/**
 * Runs scenarios: starts (or finds) the server, probes what it supports, runs each scenario
 * (scenario-run.ts) and puts their reports together with the overall grade.
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism, platform } from 'node:os';
import { LOADTEST_DEFAULTS } from './defaults.js';
import { GRADE_TABLE, overallGrade } from './grading.js';
import { probeSend } from './probe.js';
import { REPORT_FORMAT, type RunReport, type ScenarioReport } from './report-types.js';
import { runScenario } from './scenario-run.js';
import type { ScenarioSpec } from './scenarios.js';
import { launchServer, type LaunchedServer } from './server-launcher.js';

/** What the progress display is told, about once a second. */
export interface ProgressUpdate {
  scenario: string;
  index: number;
  total: number;
  phase: 'connecting' | 'warm-up' | 'measuring' | 'draining';
  /** 0..1 of this scenario's expected wall time */
  fraction: number;
  elapsedS: number;
  expectedS: number;
  connections: number;
  deliveriesPerS: number;
  p99Ms: number;
  errors: number;
}

export interface RunOptions {
  scenarios: ScenarioSpec[];
  /** Target server; when absent the runner launches one (see server-launcher). */
  host?: string;
  /**
   * Several nodes of a cluster (`--host A,B:PORT`): connections are spread over them in turn;
   * the first is `host`/`port`, the one whose /stats the report reads.
   */
  spread?: Array<{ host: string; port: number }>;
  port?: number;
  path?: string;
  /** Command that starts the server (tests use a fixture); default dist/src/main.js. */
  serverCommand?: string[];
  shards?: number;
  threads?: number;
  connectTimeoutMs?: number;
  fenceMs?: number;
  /** Loadgen threads under SCHED_FIFO when the system allows (realtime.ts); default off. */
  realtime?: boolean;
  onProgress?: (u: ProgressUpdate) => void;
  log?: (line: string) => void;
  verbose?: boolean;
  /** websocket.monitoring.token of the target, for /stats and /stats/histograms. */
  monitoringToken?: string;
  /** The target (--host) speaks TLS: wss:// and https://, trusting the system's certificates and NODE_EXTRA_CA_CERTS. */
  tls?: boolean;
  /** Echoed into the report. */
  options?: Record<string, unknown>;
  signal?: AbortSignal;
}

export async function runLoadTest(opts: RunOptions): Promise<RunReport> {
  const log = opts.log ?? (() => {});
  const startedAt = new Date().toISOString();
  const path = opts.path ?? LOADTEST_DEFAULTS.path;
  let server: LaunchedServer | null = null;
  let host = opts.host ?? '127.0.0.1';
  let port = opts.port ?? 0;
  if (opts.host === undefined) {
    log('starting the server…');
    server = await launchServer({
      ...(opts.serverCommand && { command: opts.serverCommand }),
      shards: opts.shards ?? LOADTEST_DEFAULTS.shards,
      ...(opts.verbose && { onLine: (l: string) => log(`[server] ${l}`) }),
    });
    host = server.host;
    port = server.port;
    log(`server ready on ${host}:${port} (pid ${server.pid}, shards ${server.shards ?? '?'})`);
  }
  const runId = randomBytes(3).toString('hex');
  try {
    const probe = await probeSend(host, port, path, `lt${runId}-probe`, 5000, opts.tls ?? false);
    log(`send: ${probe.note}`);
    const reports: ScenarioReport[] = [];
    for (const [i, spec] of opts.scenarios.entries()) {
      if (opts.signal?.aborted) break;
      log(`scenario ${i + 1}/${opts.scenarios.length}: ${spec.name} — ${spec.description}`);
      const r = await runScenario(spec, { host, port, path, server, probe, runId, index: i, total: opts.scenarios.length, opts });
      reports.push(r);
      log(`scenario ${spec.name}: grade ${r.grade.grade}${r.status === 'failed' ? ` (failed: ${r.error})` : ''}`);
    }
    return {
      format: REPORT_FORMAT,
      startedAt,
      finishedAt: new Date().toISOString(),
      // Spread over several nodes: all of them, the first being the one whose figures the report shows.
      target: { host: opts.spread ? opts.spread.map((node) => `${node.host}:${node.port}`).join(',') : host, port, launched: server !== null, shards: server?.shards ?? null, sendSupported: probe.supported, sendNote: probe.note },
      machine: { cpus: availableParallelism(), platform: platform(), node: process.version },
      options: opts.options ?? {},
      scenarios: reports,
      overall: overallGrade(reports.map((r) => r.grade.grade)),
      gradeTable: GRADE_TABLE,
    };
  } finally {
    if (server) {
      log('stopping the server…');
      await server.stop();
    }
  }
}

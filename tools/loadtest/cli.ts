/** `npm run loadtest -- [options]`: argument parsing and the run's outputs. */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { OcsError } from '../../src/protocol/errors.js';
import { renderCompare } from './compare.js';
import { GRADES, gradeTableMarkdown, type Grade } from './grading.js';
import { ProgressBar } from './progress.js';
import { readJsonReport, writeJsonReport } from './report-json.js';
import { writeHtmlReport } from './report-html.js';
import { renderTerminal } from './report-terminal.js';
import { defaultThreads, LOADTEST_DEFAULTS } from './defaults.js';
import { runLoadTest } from './runner.js';
import { applyOverrides, loadScenarios, selectScenarios } from './scenarios.js';

export const DEFAULT_SCENARIOS_FILE = fileURLToPath(new URL('../../../config/scenarios.yaml', import.meta.url));

const HELP = `Usage: npm run loadtest -- [options]

  --quick                 the quick suite (2 scenarios, about 3 minutes)
  --scenario NAME         run this scenario (repeat, or comma-separate, for several)
  --list                  list the scenarios and exit
  --host HOST --port N    test a running server (default: start one on a free port);
                          --port defaults to the server's ${LOADTEST_DEFAULTS.port}
  --host A,B[:PORT],...   several nodes of a cluster: connections are spread over them in
                          turn (a node without :PORT uses --port); the server-side figures
                          (/stats, /stats/histograms) are the first node's
  --tls                   the server (--host) speaks TLS: wss:// and https://; a private CA's
                          certificate goes in NODE_EXTRA_CA_CERTS=FILE
  --path PATH             WebSocket endpoint path (default ${LOADTEST_DEFAULTS.path})
  --monitoring-token T    the server's websocket.monitoring.token, for its /stats and
                          /stats/histograms (default $WEBSOCKET_MONITORING_TOKEN)
  --output FILE           JSON report (default loadtest-results/loadtest-TIME.json); the
                          HTML report goes beside it with .html
  --html FILE             HTML report path   --no-html   skip it
  --duration S            measurement seconds per scenario (overrides the file)
  --warmup S              warm-up seconds    --drain S   drain seconds
  --connections N         connections per scenario (overrides the file)
  --threads N             loadgen threads (default ${defaultThreads()})
  --normal-priority       keep the loadgen threads at normal priority (default: real-time
                          SCHED_FIFO where allowed, so messages leave on schedule)
  --shards N              shards of the server it starts (default ${LOADTEST_DEFAULTS.shards})
  --scenarios-file FILE   scenario definitions (default config/scenarios.yaml)
  --server-command CMD    command that starts the server (prints a JSON "ready" line)
  --fail-under GRADE      exit 1 when the overall grade is below GRADE (e.g. B)
  --verbose               server output and more detail
  --compare A.json B.json print the differences between two runs

Grades (docs/loadtest.md):
${gradeTableMarkdown()}
`;

/** The command line, or an E_CONFIG naming what is wrong in it (parseArgs's own error, not a stack trace). */
function parseOptions(argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        quick: { type: 'boolean', default: false },
        scenario: { type: 'string', multiple: true },
        list: { type: 'boolean', default: false },
        host: { type: 'string' },
        port: { type: 'string' },
        tls: { type: 'boolean', default: false },
        path: { type: 'string', default: LOADTEST_DEFAULTS.path },
        'monitoring-token': { type: 'string' },
        output: { type: 'string' },
        html: { type: 'string' },
        'no-html': { type: 'boolean', default: false },
        duration: { type: 'string' },
        warmup: { type: 'string' },
        drain: { type: 'string' },
        connections: { type: 'string' },
        threads: { type: 'string' },
        'normal-priority': { type: 'boolean', default: false },
        shards: { type: 'string' },
        'scenarios-file': { type: 'string' },
        'server-command': { type: 'string' },
        'fail-under': { type: 'string' },
        verbose: { type: 'boolean', default: false },
        compare: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    throw new OcsError('E_CONFIG', `${(err as Error).message} (see --help)`);
  }
}

/** Longest duration, warm-up or drain a run takes, s: past 24.8 days Node's timers overflow to 1 ms. */
const MAX_SECONDS = 86_400;

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseOptions(argv);
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (values.compare) {
    if (positionals.length !== 2) throw new OcsError('E_CONFIG', '--compare takes two report files: --compare A.json B.json');
    const [fa, fb] = positionals as [string, string];
    process.stdout.write(renderCompare(readJsonReport(fa), readJsonReport(fb), fa, fb) + '\n');
    return 0;
  }
  if (positionals.length > 0) throw new OcsError('E_CONFIG', `unexpected argument "${positionals[0]}" (see --help)`);

  const num = (name: string, v: string | undefined, integer = false): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) throw new OcsError('E_CONFIG', `--${name} must be a positive ${integer ? 'integer' : 'number'}, got "${v}"`);
    return n;
  };
  const seconds = (name: string, v: string | undefined, zero = true): number | undefined => {
    const n = zero && v === '0' ? 0 : num(name, v);
    if (n !== undefined && n > MAX_SECONDS) throw new OcsError('E_CONFIG', `--${name} is at most ${MAX_SECONDS} s (a day), got "${v}"`);
    return n;
  };
  const scenariosFile = values['scenarios-file'] ?? DEFAULT_SCENARIOS_FILE;
  const all = loadScenarios(scenariosFile);
  if (values.list) {
    for (const s of all) process.stdout.write(`${s.name.padEnd(12)} ${s.kind.padEnd(7)} ${String(s.connections).padStart(5)} conns ${String(s.durationS).padStart(4)} s  [${s.suites.join(',')}]  ${s.description}\n`);
    return 0;
  }
  const names = (values.scenario ?? []).flatMap((s) => s.split(',')).filter(Boolean);
  const overrides = {
    durationS: seconds('duration', values.duration, false),
    warmupS: seconds('warmup', values.warmup),
    drainS: seconds('drain', values.drain),
    connections: num('connections', values.connections, true),
  };
  const scenarios = selectScenarios(all, { quick: values.quick, names }).map((s) =>
    applyOverrides(s, Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined))),
  );
  if (scenarios.length === 0) throw new OcsError('E_CONFIG', `no scenario selected from ${scenariosFile}`);
  const failUnder = values['fail-under'];
  if (failUnder !== undefined && !GRADES.includes(failUnder as Grade)) throw new OcsError('E_CONFIG', `--fail-under takes one of ${GRADES.join(', ')}`);
  if (values.host === undefined && values.port !== undefined) throw new OcsError('E_CONFIG', '--port needs --host (without --host the load tester starts its own server)');
  if (values.host === undefined && values.tls) throw new OcsError('E_CONFIG', '--tls needs --host (the server the load tester starts itself speaks plain ws://)');

  const monitoringToken = values['monitoring-token'] ?? process.env.WEBSOCKET_MONITORING_TOKEN;
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const jsonFile = values.output ?? `loadtest-results/loadtest-${stamp}.json`;
  const htmlFile = values['no-html'] ? null : (values.html ?? jsonFile.replace(/\.json$/i, '') + '.html');

  const bar = new ProgressBar();
  const log = (line: string): void => {
    bar.clear();
    process.stderr.write(line + '\n');
  };
  const abort = new AbortController();
  const onSigint = (): void => {
    if (abort.signal.aborted) process.exit(130);
    log('interrupted: finishing the current scenario early (Ctrl-C again to quit at once)');
    abort.abort();
  };
  process.on('SIGINT', onSigint);
  const defaultPort = num('port', values.port, true) ?? LOADTEST_DEFAULTS.port;
  const nodes = values.host === undefined ? [] : parseHosts(values.host, defaultPort);
  try {
    const report = await runLoadTest({
      scenarios,
      ...(nodes.length > 0 && { host: nodes[0]!.host, port: nodes[0]!.port }),
      ...(nodes.length > 1 && { spread: nodes }),
      path: values.path,
      tls: values.tls,
      ...(monitoringToken && { monitoringToken }),
      ...(values['server-command'] && { serverCommand: values['server-command'].split(' ').filter(Boolean) }),
      shards: num('shards', values.shards, true) ?? LOADTEST_DEFAULTS.shards,
      threads: num('threads', values.threads, true) ?? defaultThreads(),
      realtime: !values['normal-priority'],
      verbose: values.verbose,
      log,
      onProgress: (u) => bar.update(u),
      signal: abort.signal,
      options: { quick: values.quick, scenarios: scenarios.map((s) => s.name), overrides, scenariosFile, tls: values.tls },
    });
    bar.clear();
    process.stdout.write(renderTerminal(report) + '\n');
    writeJsonReport(jsonFile, report);
    process.stdout.write(`\nJSON report: ${jsonFile}\n`);
    if (htmlFile) {
      writeHtmlReport(htmlFile, report);
      process.stdout.write(`HTML report: ${htmlFile}\n`);
    }
    if (report.scenarios.some((s) => s.status === 'failed')) return 1;
    if (failUnder && report.overall.points < 5 - GRADES.indexOf(failUnder as Grade)) return 1;
    return 0;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

/** `--host A,B:PORT,[::1]:PORT`: the nodes to spread connections over. */
export function parseHosts(list: string, defaultPort: number): Array<{ host: string; port: number }> {
  return list.split(',').map((entry) => {
    const text = entry.trim();
    const match = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(text);
    if (!match) throw new OcsError('E_CONFIG', `--host: "${text}" is not HOST or HOST:PORT`);
    const port = match[2] === undefined ? defaultPort : Number(match[2]);
    if (!(port > 0 && port < 65536)) throw new OcsError('E_CONFIG', `--host: bad port in "${text}"`);
    return { host: match[1]!.replace(/^\[|\]$/g, ''), port };
  });
}

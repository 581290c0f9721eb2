/**
 * `npm run report -- [--url URL] [--token TOKEN] [--watch] [--interval S] [--format table|json|csv] [--out FILE]`
 *
 * A running server's overview from its GET /stats and /alerts: the merged P50/P95/P99 of every
 * latency (last interval and since start), the throughput, the connections and the active
 * alerts (src/metrics/overview.ts). URL defaults to http://127.0.0.1:$WEBSOCKET_PORT (8765);
 * TOKEN (monitoring.token) to $WEBSOCKET_MONITORING_TOKEN. --watch refreshes every interval
 * (the server's metrics_collection_interval unless --interval), the table in place, until
 * Ctrl-C. --format json or csv prints one line per snapshot; --out FILE appends them to FILE
 * (CSV: the header first when the file is new or empty) or, for the table, writes the latest.
 * Exits 1 when the server cannot be read (once; --watch shows the error and keeps trying),
 * 2 on a usage error.
 */
import { appendFile, stat, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { operatorPath } from '../src/util/operator-path.js';
import type { AlertEvent } from '../src/metrics/alerts.js';
import { overviewRow, type OverviewInputs, type OverviewRow } from '../src/metrics/overview.js';
import { csvHeader, csvLine, FORMATS, formatTable, jsonLine, type OverviewFormat } from '../src/metrics/overview-format.js';
import { boundedText } from '../src/ops/bounded-text.js';

const USAGE = 'usage: npm run report -- [--url http://127.0.0.1:8765] [--token TOKEN] [--watch] [--interval SECONDS] [--format table|json|csv] [--out FILE]';
const REQUEST_TIMEOUT_MS = 5000;
/** /stats, /alerts and the histograms are kilobytes. */
const MAX_ANSWER_BYTES = 16 * 1024 * 1024;
const HIDE_CURSOR = '\x1b[?25l';
const SHOW_CURSOR = '\x1b[?25h';

interface Snapshot {
  row: OverviewRow;
  recent: AlertEvent[];
  intervalS: number | undefined;
}

interface Options {
  base: string;
  token: string;
  format: OverviewFormat;
  out: string | undefined;
}

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        url: { type: 'string' },
        token: { type: 'string' },
        watch: { type: 'boolean', short: 'w' },
        interval: { type: 'string' },
        format: { type: 'string' },
        out: { type: 'string', short: 'o' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    console.error(`report: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const format = (values.format ?? 'table') as OverviewFormat;
  const interval = values.interval === undefined ? undefined : Number(values.interval);
  // At most a day: a longer wait is past what setTimeout takes, and it would fire at once, every time.
  if (!FORMATS.includes(format) || (interval !== undefined && !(interval >= 0.05 && interval <= 86_400))) {
    console.error(`report: ${FORMATS.includes(format) ? `--interval ${values.interval} is not a number of seconds from 0.05 to 86400` : `unknown format ${format}`}\n${USAGE}`);
    return 2;
  }
  const options: Options = {
    base: (values.url ?? `http://127.0.0.1:${process.env.WEBSOCKET_PORT ?? 8765}`).replace(/\/$/, ''),
    token: values.token ?? process.env.WEBSOCKET_MONITORING_TOKEN ?? '',
    format,
    out: values.out === undefined ? undefined : operatorPath(values.out),
  };
  const output = new Output(options);
  if (!values.watch) {
    let snapshot: Snapshot;
    try {
      snapshot = await read(options);
    } catch (err) {
      console.error(`report: ${(err as Error).message}`);
      return 1;
    }
    return (await output.tryShow(snapshot)) ? 0 : 1;
  }
  return watch(options, output, interval);
}

/**
 * Shows each new snapshot until SIGINT or SIGTERM, then returns 0. The server renders once per
 * interval on its own clock: reading twice per interval and showing only what changed shows
 * each one once (reading once per interval, drift would now and then show one twice and skip
 * the next).
 */
async function watch(options: Options, output: Output, interval: number | undefined): Promise<number> {
  const stopped = new AbortController();
  const stop = (): void => stopped.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  output.startWatch();
  try {
    let everyS = interval ?? 1;
    let shown = '';
    while (!stopped.signal.aborted) {
      const started = Date.now();
      let snapshot: Snapshot;
      try {
        snapshot = await read(options, stopped.signal);
      } catch (err) {
        if (stopped.signal.aborted) break;
        output.problem(`cannot read ${options.base}: ${(err as Error).message}; trying again every ${everyS} s`);
        shown = '';
        await sleep(everyS * 500, stopped.signal);
        continue;
      }
      everyS = interval ?? snapshot.intervalS ?? everyS;
      // A file that cannot be written will not be writable at the next snapshot either: stop, as without --watch.
      if (snapshot.row.at !== shown && !(await output.tryShow(snapshot))) return 1;
      shown = snapshot.row.at;
      await sleep(Math.max(0, (everyS * 1000) / 2 - (Date.now() - started)), stopped.signal);
    }
  } finally {
    output.endWatch();
  }
  return 0;
}

async function read(options: Options, signal?: AbortSignal): Promise<Snapshot> {
  const [stats, alerts] = await Promise.all([getJson(options, '/stats', signal), getJson(options, '/alerts', signal)]);
  const latency = (stats as OverviewInputs).latency;
  return {
    row: overviewRow(stats as OverviewInputs),
    recent: Array.isArray(alerts.recent) ? (alerts.recent as AlertEvent[]) : [],
    intervalS: typeof latency?.interval_s === 'number' ? latency.interval_s : undefined,
  };
}

async function getJson(options: Options, path: string, signal?: AbortSignal): Promise<Record<string, unknown>> {
  const timeout = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
  const res = await fetch(options.base + path, {
    headers: options.token ? { authorization: `Bearer ${options.token}` } : {},
    signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
  }).catch((err: Error) => {
    throw new Error(`GET ${path}: ${(err.cause as Error | undefined)?.message ?? err.message}`);
  });
  const text = await boundedText(res, MAX_ANSWER_BYTES).catch((err: Error) => {
    throw new Error(`GET ${path}: ${err.message}`);
  });
  if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${text.slice(0, 200)}${res.status === 401 ? ' (give the monitoring token: --token or WEBSOCKET_MONITORING_TOKEN)' : ''}`);
  return JSON.parse(text) as Record<string, unknown>;
}

/** Where snapshots go: stdout (the table redrawn in place while watching) or --out. */
class Output {
  private drawnRows = 0;
  private watching = false;
  private csvHeaderDone = false;

  constructor(private readonly options: Options) {}

  startWatch(): void {
    this.watching = true;
    if (this.inPlace()) process.stdout.write(HIDE_CURSOR);
  }

  endWatch(): void {
    if (this.inPlace()) process.stdout.write(`${SHOW_CURSOR}\n`);
  }

  /** show(), or false once it said why it could not (a file that cannot be written). */
  async tryShow(snapshot: Snapshot): Promise<boolean> {
    try {
      await this.show(snapshot);
      return true;
    } catch (err) {
      console.error(`report: cannot write ${this.options.out ?? 'to standard output'}: ${(err as Error).message}`);
      return false;
    }
  }

  async show(snapshot: Snapshot): Promise<void> {
    const { format, out } = this.options;
    if (format === 'table') {
      const lines = formatTable(snapshot.row, { source: this.options.base, intervalS: snapshot.intervalS, recent: snapshot.recent });
      if (out !== undefined) await writeFile(out, `${lines.join('\n')}\n`);
      else this.draw(lines);
      return;
    }
    let text = `${format === 'json' ? jsonLine(snapshot.row) : csvLine(snapshot.row)}\n`;
    if (format === 'csv' && !this.csvHeaderDone) {
      if (out === undefined || (await sizeOf(out)) === 0) text = `${csvHeader()}\n${text}`;
      this.csvHeaderDone = true;
    }
    if (out !== undefined) await appendFile(out, text);
    else process.stdout.write(text);
  }

  problem(message: string): void {
    if (this.options.format === 'table' && this.options.out === undefined) this.draw([message]);
    else console.error(`report: ${message}`);
  }

  private inPlace(): boolean {
    return this.watching && this.options.format === 'table' && this.options.out === undefined;
  }

  /** Prints `lines`; while watching, over the previous drawing (cursor up, clear to the end). */
  private draw(lines: string[]): void {
    const up = this.inPlace() && this.drawnRows > 0 ? `\x1b[${this.drawnRows}A\r\x1b[J` : '';
    process.stdout.write(`${up}${lines.join('\n')}\n`);
    const columns = process.stdout.columns ?? 0;
    // A line wider than the terminal wraps onto more rows.
    this.drawnRows = lines.reduce((rows, line) => rows + (columns > 0 ? Math.max(1, Math.ceil(line.length / columns)) : 1), 0);
  }
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch {
    return 0;
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}

// A reader that went away (`report --watch | head`) ends the report as Ctrl-C would.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') console.error(`report: cannot write to standard output: ${err.message}`);
  process.exit(err.code === 'EPIPE' ? 0 : 1);
});
// Exits at once: fetch's idle keep-alive sockets would hold the process for seconds after Ctrl-C.
process.exit(await main());

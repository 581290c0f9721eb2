/**
 * What `npm start [-- --config FILE]` runs (through main.ts): the server until SIGTERM or SIGINT.
 * A bad configuration exits 2 with one line naming the bad key.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadConfig } from './config/load.js';
import { createServer, type RunningServer } from './index.js';
import { raiseOpenFileLimit, warnIfFewOpenFiles } from './ops/open-files.js';
import { installLastResort } from './primary/last-resort.js';
import { OcsError } from './protocol/errors.js';
import { exitAfterOutput, killAfterOutput } from './util/exit.js';
import { createLogger } from './util/logger.js';
import { VERSION } from './version.js';

const EXIT_CONFIG = 2;
const EXIT_STARTUP = 1;

async function main(): Promise<void> {
  let args;
  try {
    args = parseArgs({ options: { config: { type: 'string', short: 'c' }, check: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, version: { type: 'boolean' } } }).values;
  } catch (err) {
    console.error(`ocs-realtime: ${(err as Error).message}`);
    process.exit(EXIT_CONFIG);
  }
  if (args.help) {
    console.log('usage: npm start -- [--config FILE] [--check]   (default: config/performance_config.yaml, else built-in defaults;\n       --check: validate the config as a start would, with this environment, print one line and exit 0, or 2 naming the bad key)');
    return;
  }
  if (args.version) {
    console.log(VERSION);
    return;
  }
  let loaded;
  try {
    loaded = loadConfig({ file: args.config });
  } catch (err) {
    console.error(err instanceof OcsError ? `ocs-realtime: ${err.message}` : err);
    process.exit(EXIT_CONFIG);
  }
  const { hostRefusal } = await import('./primary/port-claim.js');
  const badHost = await hostRefusal(loaded.config.websocket.server.host);
  if (badHost !== null) {
    console.error(`ocs-realtime: ${badHost}`);
    process.exit(EXIT_CONFIG);
  }
  // A reload's new process that exits 2 leaves pm2 to stop the old one anyway (after
  // listen_timeout): `npm run reload` runs this first and reloads only a config that passes.
  if (args.check) {
    if (loaded.config.cluster.redis_url === '') {
      try {
        const { MessageStore } = await import('./store/store.js');
        MessageStore.check(loaded.config.store.data_dir);
      } catch (err) {
        console.error(`ocs-realtime: ${err instanceof Error ? err.message : String(err)}`);
        process.exit(EXIT_CONFIG);
      }
    }
    // As the start would find the port: taken by another program (or another store's server), a
    // reload's new process would exit and pm2 stop the old one after listen_timeout all the same.
    const { portIdentity, portRefusal } = await import('./primary/port-claim.js');
    const { host, port } = loaded.config.websocket.server;
    const taken = await portRefusal(host, port, portIdentity(loaded.config));
    if (taken !== null) {
      console.error(`ocs-realtime: websocket.server.port: ${taken}`);
      process.exit(EXIT_CONFIG);
    }
    console.log(`ocs-realtime: config OK (${loaded.source ?? 'built-in defaults'}; ${loaded.shards} shard${loaded.shards === 1 ? '' : 's'} on port ${loaded.config.websocket.server.port})`);
    return;
  }
  try {
    // The shards load uWebSockets.js; loading it here first turns a missing native binary
    // into one clear line before any thread starts.
    await import('./util/uws.js');
  } catch (err) {
    console.error(`ocs-realtime: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(EXIT_STARTUP);
  }
  const log = createLogger(loaded.config.logging.level);
  installLastResort(log);
  raiseOpenFileLimit(loaded.config.websocket.server.max_connections, log);
  warnIfFewOpenFiles(loaded.config.websocket.server.max_connections, log);
  // Signal handlers go in before the server starts: the `ready` line is logged inside
  // createServer, and a SIGTERM that a supervisor sends right after it must still shut down
  // gracefully rather than kill the process with its uWS sockets open.
  let server: RunningServer | null = null;
  let pendingSignal: string | null = null;
  const timeoutMs = loaded.config.websocket.server.shutdown_timeout * 1000;
  const stop = (running: RunningServer, signal: string): void => {
    log.info({ signal, timeoutMs, drainWindowMs: loaded.config.websocket.server.drain_window * 1000 }, 'shutting down');
    const deadline = setTimeout(() => {
      // A shard still runs (hung, or its sockets will not close): exiting would abort on its open sockets.
      log.error({ code: 'E_INTERNAL', timeoutMs }, 'shutdown timed out: a shard did not stop; killing the process (SIGKILL)');
      killAfterOutput();
    }, timeoutMs);
    deadline.unref();
    void running.drain();
  };
  // One drain, whatever comes next: a second signal (a second Ctrl-C, SIGTERM after SIGINT) used
  // to kill the process at once with its sockets open, every client getting 1006 and the store's
  // lease left behind; shutdown_timeout bounds the drain instead. SIGHUP (a closed terminal)
  // drains too, rather than killing outright.
  let signalled = false;
  const onSignal = (signal: string): void => {
    if (signalled) return void log.warn({ signal }, 'already shutting down: this signal changes nothing (shutdown_timeout bounds the drain)');
    signalled = true;
    if (server === null) pendingSignal = signal;
    else stop(server, signal);
  };
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    // Under nohup SIGHUP is ignored on purpose (a closed ssh session must not stop the server): a handler would undo that.
    if (signal === 'SIGHUP' && hangupIgnored()) continue;
    process.on(signal, () => onSignal(signal));
  }
  // pm2 asks this way instead of SIGINT with `shutdown_with_message: true` (or on Windows).
  process.on('message', (message) => {
    if (message === 'shutdown') onSignal('shutdown');
  });
  try {
    server = await createServer({ loaded, logger: log });
  } catch (err) {
    log.fatal({ code: err instanceof OcsError ? err.code : 'E_STARTUP', err }, 'server failed to start');
    exitAfterOutput(EXIT_STARTUP);
    return;
  }
  void server.stopped.then((exitCode) => {
    log.info({ exitCode }, 'stopped');
    exitAfterOutput(exitCode);
  });
  // Every shard listens: pm2 (wait_ready: true) counts the start as done, and in a reload only
  // now stops the old process.
  process.send?.('ready');
  if (pendingSignal !== null) stop(server, pendingSignal);
}

/** Whether this process was started with SIGHUP ignored (nohup): bit 0 of SigIgn in /proc/self/status. */
function hangupIgnored(): boolean {
  try {
    const mask = /^SigIgn:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return mask !== null && (parseInt(mask[1]!.slice(-1), 16) & 1) === 1;
  } catch {
    return false;
  }
}

/** Exits once what was written to stdout is out (under pm2's cluster mode the log file is written asynchronously). */
void main();

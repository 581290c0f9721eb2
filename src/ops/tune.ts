/**
 * `npm run tune-sysctl -- [--config FILE] [--check] [--json] [--apply]`: the host's settings
 * for many connections against the values recommended for the configured max_connections
 * (read exactly as the server reads it: the file, then the environment overrides).
 *
 * Exit codes: 0 fine; 1 something below recommendation (--check) or a write that failed
 * (--apply); 2 usage or configuration error; 3 --apply without root (nothing written).
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import { operatorPath } from '../util/operator-path.js';
import { OcsError } from '../protocol/errors.js';
import { executeApply, planApply } from './apply.js';
import { inspectHost } from './host.js';
import { meetsRecommendation, renderJson, renderText, type TuneView } from './report.js';
import { checkServerPort } from './server-port.js';
import { PORT_RANGE } from './sysctl.js';

export const EXIT_OK = 0;
export const EXIT_BELOW = 1;
export const EXIT_USAGE = 2;
export const EXIT_NOT_ROOT = 3;

const USAGE = `usage: npm run tune-sysctl -- [--config FILE] [--check] [--json] [--apply]
  --config FILE    the server's config (default config/performance_config.yaml; WEBSOCKET_* env applies)
  --check          exit 1 when any setting is below recommendation, or the server's port
                   lies unreserved in the ephemeral port range
  --json           one JSON document instead of the table
  --apply          as root: write /etc/sysctl.d/60-ocs-realtime.conf and
                   /etc/security/limits.d/ocs-realtime.conf, load the kernel values
  --proc-root DIR  read (and write) DIR/sys/... and DIR/self/limits instead of /proc (tests)
  --etc-root DIR   write the drop-ins under DIR instead of /etc (tests)`;

export interface TuneIo {
  isRoot: boolean;
  env?: NodeJS.ProcessEnv;
  print(text: string): void;
  printError(text: string): void;
}

export function tuneSysctl(argv: readonly string[], io: TuneIo): number {
  let args;
  try {
    args = parseArgs({
      args: [...argv],
      options: {
        config: { type: 'string', short: 'c' },
        check: { type: 'boolean' },
        json: { type: 'boolean' },
        apply: { type: 'boolean' },
        'proc-root': { type: 'string' },
        'etc-root': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (err) {
    io.printError(`tune-sysctl: ${(err as Error).message}\n${USAGE}`);
    return EXIT_USAGE;
  }
  if (args.help) {
    io.print(USAGE);
    return EXIT_OK;
  }
  let loaded;
  try {
    loaded = loadConfig({ file: args.config === undefined ? undefined : operatorPath(args.config, io.env ?? process.env), env: io.env ?? process.env });
  } catch (err) {
    io.printError(err instanceof OcsError ? `tune-sysctl: ${err.message}` : String(err));
    return EXIT_USAGE;
  }
  const roots = { procRoot: args['proc-root'] ?? '/proc', etcRoot: args['etc-root'] ?? '/etc' };
  const maxConnections = loaded.config.websocket.server.max_connections;
  const port = loaded.config.websocket.server.port;
  const inspect = (): Pick<TuneView, 'rows' | 'serverPort'> => {
    const rows = inspectHost(roots.procRoot, maxConnections);
    return { rows, serverPort: checkServerPort(roots.procRoot, port, rows.find((row) => row.setting.key === PORT_RANGE)?.current ?? null) };
  };
  const view: TuneView = { maxConnections, config: loaded.source, ...inspect() };
  let code = args.check && !meetsRecommendation(view) ? EXIT_BELOW : EXIT_OK;
  if (args.apply) {
    const plan = planApply(view.rows, roots, maxConnections, port);
    if (!io.isRoot) {
      view.apply = { plan, outcome: null };
      code = EXIT_NOT_ROOT;
    } else {
      const outcome = executeApply(plan, roots);
      // Report the values as they are now, so the table shows what the apply achieved.
      Object.assign(view, inspect());
      view.apply = { plan, outcome };
      code = outcome.failed || (args.check && !meetsRecommendation(view)) ? EXIT_BELOW : EXIT_OK;
    }
  }
  io.print(args.json ? renderJson(view) : renderText(view));
  return code;
}

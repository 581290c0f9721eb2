/**
 * `npm run backup -- DIR [--config FILE] [--compact]`: copies the store (store.data_dir, read as
 * the server reads it: the file, then WEBSOCKET_DATA_DIR) into DIR while the server runs; see
 * src/store/backup.ts. Prints one JSON line; exits 1 on an error, 2 on a usage error.
 */
import { rmSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config/load.js';
import { backupStore, partialCopy } from '../src/store/backup.js';
import { operatorPath } from '../src/util/operator-path.js';

const USAGE = 'usage: npm run backup -- DIR [--config FILE] [--compact]   (DIR: a new or empty directory)';

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ allowPositionals: true, options: { config: { type: 'string', short: 'c' }, compact: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  } catch (err) {
    console.error(`backup: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length !== 1) {
    console.error(USAGE);
    return 2;
  }
  // Interrupted: the copy under way is removed (a partial data.mdb still opens, and crashed the server started on it).
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      if (partialCopy.dir !== null) rmSync(partialCopy.dir, { recursive: true, force: true });
      console.error(`backup: interrupted (${signal}); nothing was left in the target`);
      // Not process.exit(): lmdb's exit hook waits for the copy under way, which then never ends.
      // The signal again, with no listener left, ends the process as it would have (exit 130, 143).
      process.kill(process.pid, signal);
    });
  }
  try {
    const { config } = loadConfig({ file: values.config === undefined ? undefined : operatorPath(values.config) });
    // store.data_dir as the server reads it (relative to where it runs: the package's directory under npm).
    const result = await backupStore(config.store.data_dir, operatorPath(positionals[0]!), values.compact ?? false);
    console.log(JSON.stringify({ store: config.store.data_dir, ...result }));
    return 0;
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    return 1;
  }
}

process.exitCode = await main();

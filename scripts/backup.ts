/**
 * `npm run backup -- DIR [--config FILE] [--compact]`: copies the store (store.data_dir, read as
 * the server reads it: the file, then WEBSOCKET_DATA_DIR) into DIR while the server runs; see
 * src/store/backup.ts. Prints one JSON line; exits 1 on an error, 2 on a usage error.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config/load.js';
import { OcsError } from '../src/protocol/errors.js';
import { backupStore } from '../src/store/backup.js';

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
  try {
    const { config } = loadConfig({ file: values.config });
    const result = await backupStore(config.store.data_dir, positionals[0]!, values.compact ?? false);
    console.log(JSON.stringify({ store: config.store.data_dir, ...result }));
    return 0;
  } catch (err) {
    console.error(err instanceof OcsError ? err.message : String(err));
    return 1;
  }
}

process.exitCode = await main();

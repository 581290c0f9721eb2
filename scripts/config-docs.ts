/**
 * `npm run config-docs [-- --check]`: writes the configuration tables into README.md between
 * its markers (src/config/docs.ts); run it after changing src/config/schema.ts or
 * config/performance_config.yaml. --check: exit 1, changing nothing, when README.md is not
 * current.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderConfigTables, replaceBetweenMarkers } from '../src/config/docs.js';
import { DEFAULT_CONFIG_PATH } from '../src/config/load.js';

const README = fileURLToPath(new URL('../../README.md', import.meta.url));

function main(): number {
  const readme = readFileSync(README, 'utf8');
  let updated: string;
  try {
    updated = replaceBetweenMarkers(readme, renderConfigTables(readFileSync(DEFAULT_CONFIG_PATH, 'utf8')));
  } catch (err) {
    console.error(`config-docs: ${(err as Error).message}`);
    return 1;
  }
  if (updated === readme) {
    console.log('config-docs: README.md is current');
    return 0;
  }
  if (process.argv.includes('--check')) {
    console.error('config-docs: README.md is not current: run npm run config-docs');
    return 1;
  }
  writeFileSync(README, updated);
  console.log('config-docs: README.md updated');
  return 0;
}

process.exitCode = main();

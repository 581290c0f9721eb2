/** `npm run loadtest -- [options]` (see --help and docs/loadtest.md). */
import { OcsError } from '../../src/protocol/errors.js';
import { main } from './cli.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`loadtest: ${err instanceof OcsError ? `${err.code}: ${err.message}` : (err as Error).stack ?? String(err)}\n`);
    process.exitCode = 2;
  },
);

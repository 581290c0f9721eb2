/**
 * `npm run loadtest -- [options]` (see --help and docs/loadtest.md).
 * V8's memory reducer is turned off first, as in the server (src/ops/memory-reducer-off.ts) and
 * the benchmarks' generator, before the rest is loaded: the loadgen threads allocate at a rate
 * it takes for idle, and its collections take several ms. (The quick suite's schedule lag did
 * not tell the difference: moderate scenario P99 0.32 ms without, 0.11-0.39 with, one run and
 * four.)
 */
import '../../src/ops/memory-reducer-off.js';

const { OcsError } = await import('../../src/protocol/errors.js');
const { main } = await import('./cli.js');

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`loadtest: ${err instanceof OcsError ? `${err.code}: ${err.message}` : (err as Error).stack ?? String(err)}\n`);
    process.exitCode = 2;
  },
);

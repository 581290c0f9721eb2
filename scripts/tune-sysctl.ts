/**
 * `npm run tune-sysctl -- [--config FILE] [--check] [--json] [--apply]`: see src/ops/tune.ts.
 */
import { tuneSysctl } from '../src/ops/tune.js';

process.exitCode = tuneSysctl(process.argv.slice(2), {
  isRoot: process.getuid?.() === 0,
  print: (text) => console.log(text),
  printError: (text) => console.error(text),
});

/**
 * Warnings a client can cause with each frame (a dropped LOW message, a failing processor, a
 * dropped dead letter) are logged at most once per interval, with how many there were
 * (src/util/tally.ts): a flood of frames is not a flood of log lines.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger } from '../src/util/logger.js';
import { warnEvery } from '../src/util/tally.js';

test('the first is logged at once; the next ones are summed into one line at the first past the interval, with the latest fields', async () => {
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger('warn');
  log.warn = ((fields: Record<string, unknown>, message: string) => void lines.push({ ...fields, message })) as unknown as typeof log.warn;
  const warn = warnEvery(log, 200, 'processor failed; messages dead-lettered');
  for (let n = 0; n < 1000; n++) warn({ type: 't', n });
  assert.deepEqual(lines, [{ type: 't', n: 0, count: 1, message: 'processor failed; messages dead-lettered' }]);
  await new Promise((resolve) => setTimeout(resolve, 250));
  warn({ type: 't', n: 1000 });
  assert.deepEqual(lines[1], { type: 't', n: 1000, count: 1000, message: 'processor failed; messages dead-lettered' });
  assert.equal(lines.length, 2);
});

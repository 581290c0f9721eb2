/**
 * Property-based fuzzing of a running server on real sockets (issue 8), bounded for `npm test`;
 * `npm run fuzz` runs the same properties for minutes. Replay a failure with the seed and path
 * fast-check prints: FUZZ_SEED=<seed> FUZZ_PATH=<path> FUZZ_VARIANT=anonymous|jwt|cluster FUZZ_ONLY=<part
 * of the test name>; FUZZ_RUNS overrides the number of runs of every property.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { todo } from './fuzzing/known-defects.js';
import { fuzzSeed, PROPERTIES, type FuzzProperty } from './fuzzing/properties.js';
import { REGRESSIONS } from './fuzzing/regressions.js';
import { clusterFuzzConfig, FuzzTarget, type Variant } from './fuzzing/target.js';
import { announceSkip, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';

const seed = fuzzSeed();
const runs = process.env.FUZZ_RUNS === undefined ? undefined : Number(process.env.FUZZ_RUNS);
const only = process.env.FUZZ_ONLY;
const path = process.env.FUZZ_PATH;
const onlyVariant = process.env.FUZZ_VARIANT;

const VARIANTS: Array<[Variant, string]> = [
  ['anonymous', 'anonymous users'],
  ['jwt', 'JWT authentication and a rate limit'],
];

/** The properties against one server, bounded by `runsOf` each (FUZZ_RUNS overrides), then its final check. */
function fuzzServer(title: string, runsOf: keyof FuzzProperty['runs'], start: () => Promise<FuzzTarget>, skip: string | false = false): void {
  describe(`fuzz: ${title}, a witness on each shard (FUZZ_SEED=${seed})`, { skip }, () => {
    let target: FuzzTarget;
    before(async () => {
      target = await start();
    });
    after(() => target?.stop());

    for (const property of PROPERTIES) {
      const name = `${property.name}: the process and its shards stay up, the witnesses keep working, every refusal is coded`;
      if (only !== undefined && !name.includes(only)) continue;
      test(name, async () => {
        await fc.assert(property.build(target, { includeKnown: false }), { seed, numRuns: runs ?? property.runs[runsOf], includeErrorInReport: true, ...(path === undefined ? {} : { path }) });
      });
    }

    test('afterwards: /health is ok, every shard welcomes a new connection, the witnesses completed every round trip', async () => {
      assert.deepEqual(await target.finalCheck(), []);
      assert.equal(target.generation, 1, 'the server never had to be restarted');
    });
  });
}

for (const [variant, what] of VARIANTS) {
  if (onlyVariant !== undefined && onlyVariant !== variant) continue;
  fuzzServer(`a two-shard server with ${what}`, variant, () => FuzzTarget.start({ variant }));
}

// Cluster mode: the same hostile input reaches Redis's keys and scripts (names, ids, sizes), and another node through them.
if (onlyVariant === undefined || onlyVariant === 'cluster') {
  let redis: PrivateRedis | undefined;
  const skip = announceSkip('fuzz-server.test (cluster)');
  after(() => redis?.stop());
  fuzzServer('a two-shard node of a cluster (a private Redis, a peer node) with anonymous users', 'cluster', async () => {
    redis = await startPrivateRedis();
    return FuzzTarget.start({ variant: 'anonymous', config: clusterFuzzConfig(redis.url), peer: true });
  }, skip);
}

// Three at a time: each mostly waits on its own server.
describe('known defects of issue 8: one regression case each, on a server of its own', { concurrency: 3 }, () => {
  for (const regression of REGRESSIONS) {
    test(regression.name, { todo: todo(regression.defect) }, async () => {
      const target = await FuzzTarget.start({ variant: regression.variant, witnesses: false });
      try {
        // A case that throws still reports what the server did meanwhile (an exit, an error log).
        const problems = await regression.run(target).catch(async (err: unknown) => [`the case threw: ${(err as Error).message}`, ...(await target.checkpoint())]);
        assert.deepEqual(problems, []);
      } finally {
        await target.stop();
      }
    });
  }
});

/**
 * `npm run fuzz -- [--minutes 5] [--seed N] [--variant anonymous|jwt|both] [--cluster] [--only TEXT] [--include-known]`
 *
 * Runs the fuzz properties of `npm test` (test/fuzzing/properties.ts) for minutes instead of a
 * few hundred runs, against a two-shard server per variant with a witness on each shard; with
 * `--cluster`, a node of a cluster on a private Redis (a redis-server binary on PATH) beside a
 * peer node with witnesses of its own, with anonymous users. A
 * failure does not end the run: it is shrunk, recorded with what reproduces it, the server is
 * restarted if it died, and fuzzing goes on with the next seed. Distinct failures (by what went
 * wrong, numbers aside) are printed at the end, then the status of each known defect's
 * regression case. `--include-known` also generates the inputs of the known defects, which
 * the properties otherwise leave out (test/fuzzing/known-defects.ts).
 *
 * Exits 0 when nothing but open known defects turned up, 1 when a new failure did or a fixed
 * defect's regression case fails again, 2 on a usage error.
 */
import { parseArgs } from 'node:util';
import fc from 'fast-check';
import { describeDefect } from './known-defects.js';
import { FuzzFailure, fuzzSeed, PROPERTIES } from './properties.js';
import { REGRESSIONS } from './regressions.js';
import { REDIS_SERVER, redisServerAvailable, startPrivateRedis } from '../../tools/lib/redis-server.js';
import { clusterFuzzConfig, FuzzTarget, type Variant } from './target.js';

const USAGE = 'usage: npm run fuzz -- [--minutes 5] [--seed N] [--variant anonymous|jwt|both] [--cluster] [--only TEXT] [--include-known]';
/** Each property gets the server for this long before the next one takes a turn. */
const SLICE_MS = 20_000;
const PRINTED_COUNTEREXAMPLE = 3000;

interface Finding {
  signature: string;
  problems: readonly string[];
  property: string;
  variant: Variant;
  seed: number;
  path: string;
  counterexample: string;
  count: number;
}

function signatureOf(problems: readonly string[]): string {
  // The same failure with other numbers (pids, ids, counts, sizes) is the same failure.
  const lines = problems.map((p) => p.split('\n')[0]!.replace(/\d+/g, 'N').replace(/"[^"]*"/g, '"…"').slice(0, 140));
  return [...new Set(lines)].sort().join(' | ');
}

function problemsOf(error: unknown): string[] {
  if (error instanceof FuzzFailure) return [...error.problems];
  return [`the property itself threw: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`];
}

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        minutes: { type: 'string', default: '5' },
        seed: { type: 'string' },
        variant: { type: 'string', default: 'both' },
        only: { type: 'string' },
        cluster: { type: 'boolean', default: false },
        'include-known': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    console.error(`fuzz: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const minutes = Number(values.minutes);
  // A cluster node is fuzzed with anonymous users, as npm test's replay (FUZZ_VARIANT=cluster) runs it.
  const variants: Variant[] = values.cluster ? ['anonymous'] : values.variant === 'both' ? ['anonymous', 'jwt'] : [values.variant as Variant];
  if (values.cluster && values.variant === 'jwt') {
    console.error(`fuzz: --cluster fuzzes anonymous users only\n${USAGE}`);
    return 2;
  }
  if (!(minutes > 0) || !variants.every((v) => v === 'anonymous' || v === 'jwt')) {
    console.error(`fuzz: bad --minutes or --variant\n${USAGE}`);
    return 2;
  }
  if (values.seed !== undefined) process.env.FUZZ_SEED = values.seed;
  let seed = fuzzSeed();
  const includeKnown = values['include-known'];
  const properties = PROPERTIES.filter((p) => values.only === undefined || p.name.includes(values.only));
  if (values.cluster && !redisServerAvailable()) {
    console.error(`fuzz: --cluster needs ${REDIS_SERVER} on PATH (apt-get install -y redis-server)`);
    return 2;
  }
  console.log(`fuzz: ${minutes} min, variants ${variants.join(', ')}${values.cluster ? ' (cluster nodes)' : ''}, first seed ${seed}${includeKnown ? ', known defects included' : ''}`);

  const redis = values.cluster ? await startPrivateRedis() : null;
  const targets = new Map<Variant, FuzzTarget>();
  for (const variant of variants) targets.set(variant, await FuzzTarget.start({ variant, config: redis ? clusterFuzzConfig(redis.url, `fuzz-${variant}:`) : {}, peer: redis !== null }));
  const findings = new Map<string, Finding>();
  const runs = new Map<string, number>();
  const deadline = Date.now() + minutes * 60_000;

  while (Date.now() < deadline) {
    for (const variant of variants) {
      for (const property of properties) {
        const left = deadline - Date.now();
        if (left <= 0) break;
        const target = targets.get(variant)!;
        await target.ensureUp();
        const details = await fc.check(property.build(target, { includeKnown }), {
          seed,
          numRuns: Number.MAX_SAFE_INTEGER,
          plugins: [fc.interruptAfterTimeLimit(Math.min(SLICE_MS, left))],
        });
        const key = `${variant}: ${property.name}`;
        runs.set(key, (runs.get(key) ?? 0) + details.numRuns);
        if (details.failed) {
          const problems = problemsOf(details.errorInstance);
          const signature = signatureOf(problems);
          const seen = findings.get(signature);
          if (seen) seen.count++;
          else {
            const counterexample = fc.stringify(details.counterexample);
            findings.set(signature, { signature, problems, property: property.name, variant, seed: details.seed, path: details.counterexamplePath ?? '', counterexample, count: 1 });
            console.log(`\n[${new Date().toISOString()}] NEW FAILURE (${variant}): ${problems.join('\n  ')}`);
          }
        }
        process.stdout.write(`  ${variant} | ${property.name.split(':')[0]} | seed ${seed} | ${details.numRuns} runs${details.failed ? ' | failed' : ''} | witness rounds ${target.rounds().join('/')}\n`);
        seed++;
      }
    }
  }

  for (const [variant, target] of targets) {
    const problems = await target.finalCheck();
    if (problems.length > 0) {
      findings.set(`final ${variant}`, { signature: `final ${variant}`, problems, property: 'final check', variant, seed: 0, path: '', counterexample: '', count: 1 });
    }
    console.log(`${variant}: servers started ${target.generation}, exit ${await target.stop()}`);
  }
  await redis?.stop();

  console.log('\n=== runs');
  for (const [key, count] of runs) console.log(`${count}\t${key}`);
  console.log(`\n=== ${findings.size} distinct failure(s)`);
  let n = 0;
  for (const f of findings.values()) {
    console.log(`\n--- ${++n}. ${f.variant} / ${f.property} (seen ${f.count} time(s))`);
    for (const p of f.problems) console.log(`  ${p.replace(/\n/g, '\n  ')}`);
    if (f.path !== '') {
      console.log(`  replay: FUZZ_VARIANT=${values.cluster ? 'cluster' : f.variant} FUZZ_SEED=${f.seed} FUZZ_PATH=${f.path} FUZZ_ONLY='${f.property.split(':')[0]}' node --test dist/test/fuzz-server.test.js`);
      console.log(`  counterexample: ${f.counterexample.slice(0, PRINTED_COUNTEREXAMPLE)}${f.counterexample.length > PRINTED_COUNTEREXAMPLE ? ' …' : ''}`);
    }
  }

  console.log('\n=== known defects (regression cases)');
  let regressed = false;
  for (const regression of REGRESSIONS) {
    const target = await FuzzTarget.start({ variant: regression.variant, witnesses: false });
    const problems = await regression.run(target).finally(() => target.stop());
    const status = problems.length === 0 ? (regression.defect.open ? 'FIXED (mark it so)' : 'passes') : regression.defect.open ? 'still fails' : 'REGRESSED';
    console.log(`${status.padEnd(18)} ${describeDefect(regression.defect)}`);
    for (const p of problems) console.log(`    ${p.split('\n')[0]!.slice(0, 200)}`);
    regressed ||= problems.length > 0 && !regression.defect.open;
  }
  return findings.size > 0 || regressed ? 1 : 0;
}

process.exitCode = await main();

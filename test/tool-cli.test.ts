/**
 * The benchmarks' command lines (tools/lib/cli.ts): `--help` lists every option with its
 * default, a typo or a value that is not a number is named with the usage and exit code 2, and
 * no tool starts a run on a bad option.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseToolArgs, usage } from '../tools/lib/cli.js';

const cli = {
  command: 'npm run bench:example --',
  about: 'An example.',
  options: {
    rate: { type: 'number', default: 500, min: 1, help: 'pubs a second' },
    pairs: { type: 'int', default: 12, help: 'pairs' },
    sizes: { type: 'ints', default: '64,256', min: 1, help: 'sizes' },
    targets: { type: 'names', known: ['a', 'b'] as const, default: 'a', help: 'targets' },
    mode: { type: 'choice', known: ['bulk', 'trickle'] as const, default: 'bulk', help: 'how' },
    out: { type: 'string', value: 'FILE', help: 'where' },
    quiet: { type: 'boolean', help: 'say less' },
  },
} as const;

describe('a tool command line', () => {
  it('gives the defaults, typed, when no option is given', () => {
    assert.deepEqual(parseToolArgs(cli, []), { rate: 500, pairs: 12, sizes: [64, 256], targets: ['a'], mode: 'bulk', out: undefined, quiet: false });
  });

  it('parses numbers, lists and names', () => {
    const values = parseToolArgs(cli, ['--rate', '2.5', '--pairs', '4', '--sizes', '1, 2,3', '--targets', 'b,a', '--mode', 'trickle', '--out', 'x.json', '--quiet']);
    assert.deepEqual(values, { rate: 2.5, pairs: 4, sizes: [1, 2, 3], targets: ['b', 'a'], mode: 'trickle', out: 'x.json', quiet: true });
  });

  it('names the option that is wrong', () => {
    const cases: Array<[string[], RegExp]> = [
      [['--rate', 'fast'], /--rate must be a number, got "fast"/],
      [['--rate', ''], /--rate must be a number/],
      [['--rate', '0'], /--rate must be at least 1/],
      [['--rate', 'Infinity'], /--rate must be a number/],
      [['--pairs', '2.5'], /--pairs must be an integer/],
      [['--pairs=-2'], /--pairs must be at least 0/],
      [['--pairs', '-2'], /ambiguous/],
      [['--sizes', '64,,256'], /--sizes must be a comma-separated list/],
      [['--sizes', '64,big'], /--sizes must be a number, got "big"/],
      [['--targets', 'a,__proto__'], /--targets: unknown "__proto__" \(known: a, b\)/],
      [['--targets', ','], /--targets names none/],
      [['--mode', 'bulk,trickle'], /--mode: one of bulk, trickle, got "bulk,trickle"/],
      [['--rat', '5'], /Unknown option '--rat'/],
      [['--rate'], /--rate/],
      [['extra'], /positional/i],
    ];
    for (const [argv, message] of cases) assert.throws(() => parseToolArgs(cli, argv), message, argv.join(' '));
  });

  it('lists every option with its default in the usage', () => {
    const text = usage(cli);
    assert.match(text, /^Usage: npm run bench:example -- \[options\]/);
    assert.match(text, /--rate N +pubs a second \(default 500\)/);
    assert.match(text, /--targets A,B,\.\.\. +targets \(default a\) \(of a, b\)/);
    assert.match(text, /--mode NAME +how \(default bulk\) \(of bulk, trickle\)/);
    assert.match(text, /--out FILE +where\n/);
    assert.match(text, /--quiet +say less\n/);
    assert.match(text, /--help +this text$/);
  });
});

const BENCH_DIR = fileURLToPath(new URL('../tools/bench/', import.meta.url));
/** Every benchmark entry (lib/ holds their parts, native/ the C generator). */
const ENTRIES = readdirSync(BENCH_DIR).filter((file) => file.endsWith('.js'));

describe('every benchmark', { concurrency: 4 }, () => {
  it('has entries to check', () => assert.ok(ENTRIES.length >= 15, ENTRIES.join(', ')));

  for (const file of ENTRIES) {
    it(`${file}: --help prints its usage and exits 0; a misspelt option exits 2 with the usage and no stack trace`, () => {
      const help = spawnSync(process.execPath, [BENCH_DIR + file, '--help'], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(help.status, 0, help.stderr);
      assert.match(help.stdout, /^Usage: .+\[options\]\n/);
      assert.match(help.stdout, /--help +this text/);
      const bad = spawnSync(process.execPath, [BENCH_DIR + file, '--no-such-option'], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(bad.status, 2, bad.stderr);
      assert.match(bad.stderr, /Unknown option '--no-such-option'/);
      assert.match(bad.stderr, /Usage: /);
      assert.doesNotMatch(bad.stderr, /\n\s+at /, 'no stack trace');
    });
  }
});

/**
 * The command line of a tool (the benchmarks): each option with its type, default and a line
 * of help, parsed once, numbers checked. `--help` (or `-h`) prints the usage and exits 0; an
 * unknown option, a missing value or a number that is not one prints what is wrong and the
 * usage, and exits 2: a typo gets its name back, not a stack trace, and never a run on NaN.
 */
import { parseArgs } from 'node:util';

interface NumberOption {
  type: 'number' | 'int';
  default: number;
  /** Smallest value taken (default 0). */
  min?: number;
  help: string;
}
interface StringOption {
  type: 'string';
  default?: string;
  /** What the help shows as the value, e.g. LIST or FILE (default VALUE). */
  value?: string;
  help: string;
}
interface BooleanOption {
  type: 'boolean';
  help: string;
}
/** Comma-separated numbers, e.g. message sizes. */
interface NumberListOption {
  type: 'numbers' | 'ints';
  default: string;
  min?: number;
  help: string;
}
/** Comma-separated names, each one of `known` (e.g. the benchmark's targets). */
interface NameListOption<N extends string = string> {
  type: 'names';
  known: readonly N[];
  default: string;
  help: string;
}
/** One name of `known` (e.g. a payload kind). */
interface ChoiceOption<N extends string = string> {
  type: 'choice';
  known: readonly N[];
  default: N;
  help: string;
}
export type ToolOption = NumberOption | StringOption | BooleanOption | NumberListOption | NameListOption | ChoiceOption;

export type ToolValues<T extends Record<string, ToolOption>> = {
  [K in keyof T]: T[K] extends NumberOption
    ? number
    : T[K] extends BooleanOption
      ? boolean
      : T[K] extends NumberListOption
        ? number[]
        : T[K] extends { type: 'names'; known: readonly (infer N)[] }
          ? N[]
          : T[K] extends { type: 'choice'; known: readonly (infer N)[] }
            ? N
            : T[K] extends { default: string }
              ? string
              : string | undefined;
};

export interface ToolCli<T extends Record<string, ToolOption>> {
  /** How it is run, e.g. `npm run bench:ring --`. */
  command: string;
  /** What it does, in a sentence or two (the file's header says the rest). */
  about: string;
  options: T;
  /** Settings the tool reads from the environment instead (two older benchmarks), with their help. */
  env?: Record<string, string>;
}

const VALUE_NAMES: Partial<Record<ToolOption['type'], string>> = { number: 'N', int: 'N', numbers: 'N,N,...', ints: 'N,N,...', names: 'A,B,...', choice: 'NAME' };

/** The usage text: the command, what it does, and every option with its default. */
export function usage(cli: ToolCli<Record<string, ToolOption>>): string {
  const rows = Object.entries(cli.options).map(([name, o]) => {
    const flag = o.type === 'boolean' ? `--${name}` : `--${name} ${VALUE_NAMES[o.type] ?? (o as StringOption).value ?? 'VALUE'}`;
    const known = o.type === 'names' || o.type === 'choice' ? ` (of ${o.known.join(', ')})` : '';
    const shown = o.type === 'boolean' || o.default === undefined || o.default === '' ? '' : ` (default ${o.default})`;
    return [flag, o.help + shown + known] as const;
  });
  const width = Math.min(30, Math.max(6, ...rows.map(([flag]) => flag.length))) + 2;
  const indent = '\n' + ' '.repeat(2 + width);
  const lines = rows.map(([flag, text]) => `  ${flag.length < width ? flag.padEnd(width) : flag + indent}${wrap(text, USAGE_COLUMNS - 2 - width).replaceAll('\n', indent)}`);
  const env = Object.entries(cli.env ?? {}).map(([name, help]) => `  ${name}: ${help}`);
  const envText = env.length === 0 ? '' : `\n\nEnvironment:\n${env.join('\n')}`;
  return `Usage: ${cli.command} [options]\n\n${wrap(cli.about, USAGE_COLUMNS)}\n\nOptions:\n${[...lines, `  ${'--help'.padEnd(width)}this text`].join('\n')}${envText}`;
}

const USAGE_COLUMNS = 100;

function wrap(text: string, columns: number): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line !== '' && line.length + 1 + word.length > columns) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  return [...lines, line].join('\n');
}

/** The options' values, checked; throws an Error naming the option when one is wrong. */
export function parseToolArgs<T extends Record<string, ToolOption>>(cli: ToolCli<T>, argv: string[]): ToolValues<T> {
  const config: Record<string, { type: 'string' | 'boolean'; default?: string | boolean }> = {};
  for (const [name, o] of Object.entries(cli.options)) {
    config[name] = o.type === 'boolean' ? { type: 'boolean', default: false } : o.default === undefined ? { type: 'string' } : { type: 'string', default: String(o.default) };
  }
  const { values } = parseArgs({ args: argv, options: config, strict: true, allowPositionals: false });
  const out: Record<string, unknown> = {};
  for (const [name, o] of Object.entries(cli.options)) {
    const raw = values[name];
    out[name] = valueOf(name, o, raw);
  }
  return out as ToolValues<T>;
}

function valueOf(name: string, o: ToolOption, raw: string | boolean | undefined): unknown {
  switch (o.type) {
    case 'number':
    case 'int':
      return numberArg(name, raw as string, o.type === 'int', o.min ?? 0);
    case 'numbers':
    case 'ints':
      return numberList(name, raw as string, o.type === 'ints', o.min ?? 0);
    case 'names':
      return nameList(name, raw as string, o.known);
    case 'choice': {
      if (!(o.known as readonly string[]).includes(raw as string)) throw new Error(`--${name}: one of ${o.known.join(', ')}, got ${JSON.stringify(raw)}`);
      return raw;
    }
    default:
      return raw;
  }
}

/**
 * parseToolArgs() on this process's arguments, for a tool's entry: `--help` prints the usage
 * (exit 0), a wrong option its error and the usage (exit 2). `check` may throw on what one
 * option alone cannot say (a combination of them), and is answered the same way.
 */
export function toolArgs<T extends Record<string, ToolOption>>(cli: ToolCli<T>, check?: (values: ToolValues<T>) => void, argv: string[] = process.argv.slice(2)): ToolValues<T> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${usage(cli)}\n`);
    process.exit(0);
  }
  try {
    const values = parseToolArgs(cli, argv);
    check?.(values);
    return values;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${usage(cli)}\n`);
    process.exit(2);
  }
}

/** A number option's value: finite, at least `min`, an integer if `integer`. */
export function numberArg(name: string, text: string, integer: boolean, min = 0): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value)) throw new Error(`--${name} must be a number, got ${JSON.stringify(text)}`);
  if (integer && !Number.isInteger(value)) throw new Error(`--${name} must be an integer, got ${text}`);
  if (value < min) throw new Error(`--${name} must be at least ${min}, got ${text}`);
  return value;
}

/** A comma-separated list of numbers (e.g. sizes), each checked as numberArg() does. */
export function numberList(name: string, text: string, integer: boolean, min = 0): number[] {
  const items = text.split(',').map((item) => item.trim());
  if (items.some((item) => item === '')) throw new Error(`--${name} must be a comma-separated list of numbers, got ${JSON.stringify(text)}`);
  return items.map((item) => numberArg(name, item, integer, min));
}

/** A comma-separated list of names, each one of `known`. */
export function nameList<N extends string>(name: string, text: string, known: readonly N[]): N[] {
  const items = text.split(',').map((item) => item.trim()).filter(Boolean);
  if (items.length === 0) throw new Error(`--${name} names none`);
  for (const item of items) if (!(known as readonly string[]).includes(item)) throw new Error(`--${name}: unknown ${JSON.stringify(item)} (known: ${known.join(', ')})`);
  return items as N[];
}

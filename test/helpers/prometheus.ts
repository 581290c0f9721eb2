/**
 * A strict reader of the Prometheus text exposition format 0.0.4, for tests: it throws on
 * anything Prometheus would refuse or mis-read (bad names, label syntax or values, a family
 * split in two, a sample without its TYPE, a duplicate series, histogram buckets that are not
 * cumulative or whose +Inf bucket is not the count), and returns every sample by series.
 * `promtool check metrics` is run as well where it is installed (Debian package `prometheus`).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { getText } from './client.js';
import { until } from './messaging.js';

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Series key: name{a="x",b="y"} with labels sorted. */
export function seriesKey(name: string, labels: Record<string, string>): string {
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`);
  return `${name}{${parts.join(',')}}`;
}

export function parseExposition(text: string): { samples: Sample[]; types: Map<string, string> } {
  if (!text.endsWith('\n')) throw new Error('the exposition must end with a newline');
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const finished = new Set<string>();
  const series = new Set<string>();
  const samples: Sample[] = [];
  let current: string | null = null;
  const enter = (family: string, line: number): void => {
    if (family === current) return;
    if (finished.has(family)) throw new Error(`line ${line}: family ${family} appears in two groups`);
    if (current !== null) finished.add(current);
    current = family;
  };
  text
    .slice(0, -1)
    .split('\n')
    .forEach((line, i) => {
      const at = i + 1;
      if (line === '') return;
      const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (meta) {
        const [, kind, name, rest] = meta as unknown as [string, string, string, string];
        if (!NAME.test(name)) throw new Error(`line ${at}: bad metric name ${name}`);
        enter(name, at);
        if (kind === 'TYPE') {
          if (types.has(name)) throw new Error(`line ${at}: second TYPE for ${name}`);
          if (!TYPES.has(rest)) throw new Error(`line ${at}: unknown type ${rest}`);
          if (samples.some((s) => familyOf(s.name, types) === name)) throw new Error(`line ${at}: TYPE of ${name} after its samples`);
          types.set(name, rest);
        } else {
          if (helps.has(name)) throw new Error(`line ${at}: second HELP for ${name}`);
          helps.add(name);
        }
        return;
      }
      if (line.startsWith('#')) return;
      const sample = parseSample(line, at);
      const family = familyOf(sample.name, types);
      if (!types.has(family)) throw new Error(`line ${at}: sample ${sample.name} without a TYPE`);
      enter(family, at);
      const key = seriesKey(sample.name, sample.labels);
      if (series.has(key)) throw new Error(`line ${at}: duplicate series ${key}`);
      series.add(key);
      if (types.get(family) === 'counter' && !(sample.value >= 0)) throw new Error(`line ${at}: counter ${key} is ${sample.value}`);
      samples.push(sample);
    });
  for (const [family, type] of types) if (type === 'histogram') checkHistogram(family, samples);
  return { samples, types };
}

/** Runs `promtool check metrics` on `text`; null when promtool is not installed, else its complaints ('' for none). */
export function promtoolCheck(text: string): string | null {
  const result = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  if (result.error && (result.error as NodeJS.ErrnoException).code === 'ENOENT') return null;
  if (result.error) throw result.error;
  return result.status === 0 ? '' : `${result.stdout}${result.stderr}`.trim() || `exit ${result.status}`;
}

function familyOf(name: string, types: Map<string, string>): string {
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      if (types.get(base) === 'histogram' || types.get(base) === 'summary') return base;
    }
  }
  return name;
}

function parseSample(line: string, at: number): Sample {
  const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)( -?\d+)?$/.exec(line);
  if (!match) throw new Error(`line ${at}: not a sample: ${line}`);
  const [, name, labelText, valueText] = match as unknown as [string, string, string | undefined, string];
  const labels: Record<string, string> = {};
  if (labelText !== undefined) {
    let rest = labelText.slice(1, -1);
    while (rest !== '') {
      const pair = /^([^=]+)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/.exec(rest);
      if (!pair) throw new Error(`line ${at}: bad labels ${labelText}`);
      const [whole, label, raw] = pair as unknown as [string, string, string];
      if (!LABEL.test(label) || label.startsWith('__')) throw new Error(`line ${at}: bad label name ${label}`);
      if (label in labels) throw new Error(`line ${at}: label ${label} twice`);
      labels[label] = raw.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      rest = rest.slice(whole.length);
    }
  }
  const value = valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : valueText === 'NaN' ? NaN : Number(valueText);
  if (Number.isNaN(value) && valueText !== 'NaN') throw new Error(`line ${at}: bad value ${valueText}`);
  if (!/^[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?|Inf|NaN)$/.test(valueText)) throw new Error(`line ${at}: bad value ${valueText}`);
  return { name, labels, value };
}

function checkHistogram(family: string, samples: Sample[]): void {
  const groups = new Map<string, { buckets: Array<[number, number]>; sum?: number; count?: number }>();
  const groupOf = (labels: Record<string, string>): { buckets: Array<[number, number]>; sum?: number; count?: number } => {
    const { le: _le, ...rest } = labels;
    const key = seriesKey(family, rest);
    let group = groups.get(key);
    if (!group) groups.set(key, (group = { buckets: [] }));
    return group;
  };
  for (const s of samples) {
    if (s.name === `${family}_bucket`) {
      if (s.labels.le === undefined) throw new Error(`${family}: bucket without le`);
      groupOf(s.labels).buckets.push([s.labels.le === '+Inf' ? Infinity : Number(s.labels.le), s.value]);
    } else if (s.name === `${family}_sum`) groupOf(s.labels).sum = s.value;
    else if (s.name === `${family}_count`) groupOf(s.labels).count = s.value;
    else if (s.name === family) throw new Error(`${family}: a histogram has no plain samples`);
  }
  for (const [key, group] of groups) {
    const sorted = [...group.buckets].sort((a, b) => a[0] - b[0]);
    sorted.forEach(([le, count], i) => {
      if (Number.isNaN(le)) throw new Error(`${key}: bad le`);
      if (i > 0 && count < sorted[i - 1]![1]) throw new Error(`${key}: bucket le=${le} holds less than the one before`);
    });
    const inf = sorted[sorted.length - 1];
    if (!inf || inf[0] !== Infinity) throw new Error(`${key}: no +Inf bucket`);
    if (group.sum === undefined || group.count === undefined) throw new Error(`${key}: _sum or _count missing`);
    if (inf[1] !== group.count) throw new Error(`${key}: +Inf bucket ${inf[1]} is not _count ${group.count}`);
  }
}

/** A server's /metrics, parsed (and checked by the strict parser). */
export async function scrape(port: number, token?: string): Promise<Sample[]> {
  const { status, text } = await getText(port, '/metrics', 'GET', token);
  assert.equal(status, 200);
  return parseExposition(text).samples;
}

/** The sum of a metric's samples whose labels include `labels`. */
export function total(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0);
}

/** Polls /metrics until `name` (summed) equals `expected`: the threads report once per interval. */
export async function untilMetricIs(port: number, name: string, expected: number, labels: Record<string, string> = {}, token?: string): Promise<Sample[]> {
  let seen = NaN;
  return until(async () => {
    const samples = await scrape(port, token);
    seen = total(samples, name, labels);
    return seen === expected ? samples : undefined;
  }, `${name} = ${expected} (last seen ${seen})`);
}

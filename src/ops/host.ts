/**
 * Reads the settings of src/ops/sysctl.ts from a /proc tree and compares them with the
 * recommendation. The root is a parameter so that tests read a fake tree, never the host's.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NOFILE, SETTINGS, parseValues, type Setting, type Values } from './sysctl.js';

export interface Row {
  setting: Setting;
  /** null when it could not be read (see `error`). */
  current: Values | null;
  /** The value as the kernel printed it, fields one space apart: exact where a number is not (LONG_MAX). */
  text: string | null;
  error?: string;
  recommended: Values;
  /** null when unknown (unreadable). */
  pass: boolean | null;
}

export function sysctlPath(procRoot: string, key: string): string {
  return join(procRoot, 'sys', ...key.split('.'));
}

export interface OpenFileLimit {
  soft: number;
  hard: number;
}

/** The "Max open files" line of /proc/self/limits; null when absent (not Linux) or unparsable. */
export function readOpenFileLimit(procRoot = '/proc'): OpenFileLimit | null {
  const fields = readLimitFields(procRoot);
  if (fields === null) return null;
  const limit = (field: string): number => (field === 'unlimited' ? Infinity : Number(field));
  return { soft: limit(fields[0]), hard: limit(fields[1]) };
}

function readLimitFields(procRoot: string): [string, string] | null {
  let text: string;
  try {
    text = readFileSync(join(procRoot, 'self', 'limits'), 'utf8');
  } catch {
    return null;
  }
  const match = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(text);
  return match ? [match[1]!, match[2]!] : null;
}

/** ENOENT, EACCES...: the errno name says what went wrong with a file. */
export function errorCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? String(err);
}

function readCurrent(procRoot: string, setting: Setting): { current: Values | null; text: string | null; error?: string } {
  let text: string;
  if (setting.key === NOFILE) {
    const fields = readLimitFields(procRoot);
    if (fields === null) return { current: null, text: null, error: 'no "Max open files" in self/limits' };
    text = fields.join(' ');
  } else {
    try {
      text = readFileSync(sysctlPath(procRoot, setting.key), 'utf8').trim().split(/\s+/).join(' ');
    } catch (err) {
      return { current: null, text: null, error: errorCode(err) };
    }
  }
  const current = parseValues(text.replaceAll('unlimited', String(Number.MAX_SAFE_INTEGER)), setting.fields);
  return current ? { current, text } : { current: null, text, error: `unexpected value ${JSON.stringify(text)}` };
}

export function inspectHost(procRoot: string, maxConnections: number): Row[] {
  return SETTINGS.map((setting) => {
    const { current, text, error } = readCurrent(procRoot, setting);
    const recommended = setting.recommend(maxConnections);
    const pass = current === null ? null : setting.rule.passes(current, recommended);
    return error === undefined ? { setting, current, text, recommended, pass } : { setting, current, text, error, recommended, pass };
  });
}

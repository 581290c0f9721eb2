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
  let text: string;
  try {
    text = readFileSync(join(procRoot, 'self', 'limits'), 'utf8');
  } catch {
    return null;
  }
  const match = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(text);
  if (!match) return null;
  const limit = (field: string): number => (field === 'unlimited' ? Infinity : Number(field));
  return { soft: limit(match[1]!), hard: limit(match[2]!) };
}

/** ENOENT, EACCES...: the errno name says what went wrong with a file. */
export function errorCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? String(err);
}

function readCurrent(procRoot: string, setting: Setting): { current: Values | null; error?: string } {
  if (setting.key === NOFILE) {
    const limit = readOpenFileLimit(procRoot);
    return limit ? { current: [limit.soft, limit.hard] } : { current: null, error: 'no "Max open files" in self/limits' };
  }
  let text: string;
  try {
    text = readFileSync(sysctlPath(procRoot, setting.key), 'utf8');
  } catch (err) {
    return { current: null, error: errorCode(err) };
  }
  const current = parseValues(text, setting.fields);
  return current ? { current } : { current: null, error: `unexpected value ${JSON.stringify(text.trim())}` };
}

export function inspectHost(procRoot: string, maxConnections: number): Row[] {
  return SETTINGS.map((setting) => {
    const { current, error } = readCurrent(procRoot, setting);
    const recommended = setting.recommend(maxConnections);
    const pass = current === null ? null : setting.rule.passes(current, recommended);
    return error === undefined ? { setting, current, recommended, pass } : { setting, current, error, recommended, pass };
  });
}

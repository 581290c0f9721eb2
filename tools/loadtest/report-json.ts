/** The JSON report (--output): every figure of the run, readable back by --compare. */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { OcsError } from '../../src/protocol/errors.js';
import { REPORT_FORMAT, type RunReport } from './report-types.js';

export function writeJsonReport(file: string, report: RunReport): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
}

export function readJsonReport(file: string): RunReport {
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new OcsError('E_CONFIG', `cannot read load-test report ${file}: ${(err as Error).message}`, { cause: err });
  }
  const r = data as Partial<RunReport>;
  if (r.format !== REPORT_FORMAT || !Array.isArray(r.scenarios)) {
    throw new OcsError('E_CONFIG', `${file} is not a load-test report (format "${String(r.format)}", expected "${REPORT_FORMAT}")`);
  }
  return r as RunReport;
}

/**
 * --apply: one sysctl drop-in and one limits.d drop-in, rewritten whole on every run (never
 * appended to, so running it twice leaves the same files), then the kernel values loaded.
 *
 * Each value written is the better of the running value, the recommendation and what the
 * drop-in already held, so nothing is ever lowered. A key goes into the drop-in when it has
 * to change or when the drop-in already held it (so it stays applied at boot); a key the
 * host already meets is left alone rather than pinned.
 *
 * Loading writes /proc/sys/<key> directly instead of running `sysctl -p FILE`: it gives one
 * result per key (sysctl -p goes on past a failure and reports it only as text on stderr),
 * needs no procps in a slim image, and follows --proc-root in tests. At boot, systemd-sysctl
 * loads the same file.
 */
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { overriddenAtBoot, readOrEmpty, type BootOverride } from './boot-order.js';
import { errorCode, sysctlPath, type Row } from './host.js';
import { addPort, checkServerPort, listHolds, RESERVED_PORTS } from './server-port.js';
import { NOFILE, formatValues, parseValues, PORT_RANGE, sameValues, SETTINGS, type Rule, type Values } from './sysctl.js';

export const SYSCTL_DROP_IN = join('sysctl.d', '60-ocs-realtime.conf');
export const LIMITS_DROP_IN = join('security', 'limits.d', 'ocs-realtime.conf');

export interface ApplyRoots {
  procRoot: string;
  etcRoot: string;
}

export interface KernelWrite {
  key: string;
  from: Values;
  to: Values;
}

export interface Plan {
  sysctlFile: string;
  /** null: nothing to write (no key to raise and no earlier drop-in). */
  sysctlContent: string | null;
  kernel: KernelWrite[];
  limitsFile: string;
  /** The nofile values for limits.d, or null when the limit is high enough and no drop-in exists. */
  nofile: Values | null;
  maxConnections: number;
  /** Lines of other sysctl files that set a key of ours again after our drop-in at boot. */
  overriddenAtBoot: BootOverride[];
  /** The server's port, when the ephemeral range (as applied) holds it unreserved: the reserved list before and after. */
  reserve: { port: number; from: string; to: string } | null;
}

export type FileStatus = 'created' | 'updated' | 'unchanged' | 'not needed';

export interface Outcome {
  files: Array<{ path: string; status: FileStatus | 'failed'; error?: string }>;
  kernel: Array<KernelWrite & { ok: boolean; error?: string }>;
  /** The reserved-ports write, when the plan has one. */
  reserved?: { ok: boolean; error?: string };
  /** Set when limits.d was capped at fs.nr_open (a failed nr_open write, or an earlier drop-in above it). */
  nofileCappedAt?: number;
  failed: boolean;
}

const HEADER = (maxConnections: number): string =>
  `# Written by \`npm run tune-sysctl -- --apply\` (ocs-realtime) for max_connections=${maxConnections}.\n` +
  '# Rewritten whole on every run, never lowering a value (to lower one, edit this file and the running value yourself).\n';

export function planApply(rows: readonly Row[], roots: ApplyRoots, maxConnections: number, serverPort = 0): Plan {
  const sysctlFile = join(roots.etcRoot, SYSCTL_DROP_IN);
  const limitsFile = join(roots.etcRoot, LIMITS_DROP_IN);
  const earlier = readSysctlDropIn(sysctlFile);
  const lines: string[] = [];
  const kernel: KernelWrite[] = [];
  let nofile: Values | null = null;
  let range = rows.find((row) => row.setting.key === PORT_RANGE)?.current ?? null;
  for (const { setting, current, recommended, pass } of rows) {
    // A key unreadable here is written only if the drop-in held it: this kernel may not have it.
    // One that passes keeps its value (a wide enough port range is not moved).
    // Past 2^53 a value is not carried exactly (fs.file-max may be LONG_MAX): written back it
    // would change, even above what the kernel takes. A running one is far above any
    // recommendation and is left as it is; a drop-in's (hand-edited) is not believed.
    const unsafe = (values: Values | null | undefined): boolean => values != null && values.some((v) => !Number.isSafeInteger(v));
    if (unsafe(current)) continue;
    const dropIn = setting.key === NOFILE ? readLimitsDropIn(limitsFile) : earlier.get(setting.key);
    const held = unsafe(dropIn) ? null : dropIn;
    const target = current === null ? (held ?? null) : best(setting.rule, [current, pass ? null : recommended, held]);
    if (target === null) continue;
    const changes = current === null || !sameValues(target, current);
    if (!changes && held == null) continue;
    if (setting.key === NOFILE) {
      nofile = target; // nothing to load: only new sessions can get a limit
      continue;
    }
    if (changes && current !== null) kernel.push({ key: setting.key, from: current, to: target });
    lines.push(`${setting.key} = ${formatValues(target)}`);
    if (setting.key === PORT_RANGE) range = target;
  }
  // The server's port out of the kernel's picks once the range is wide; a list the drop-in held stays (for the boot).
  const check = checkServerPort(roots.procRoot, serverPort, range);
  const reserve = check?.reserveTo == null ? null : { port: serverPort, from: check.reserved, to: check.reserveTo };
  const heldList = readDropInLine(sysctlFile, RESERVED_PORTS);
  const list = heldList === null ? reserve?.to : reserve === null ? heldList : addPort(heldList, serverPort);
  if (list != null) lines.push(`${RESERVED_PORTS} = ${list}`);
  const sysctlContent = lines.length > 0 || existsSync(sysctlFile) ? `${HEADER(maxConnections)}\n${lines.join('\n')}\n` : null;
  const ours = new Map(lines.map((line) => line.split(' = ') as [string, string]));
  return { sysctlFile, sysctlContent, kernel, limitsFile, nofile, maxConnections, overriddenAtBoot: overriddenAtBoot(roots.etcRoot, sysctlFile, ours), reserve };
}

export function executeApply(plan: Plan, roots: ApplyRoots): Outcome {
  const outcome: Outcome = { files: [], kernel: [], failed: false };
  outcome.files.push(writeDropIn(plan.sysctlFile, plan.sysctlContent));
  for (const write of plan.kernel) {
    const error = loadKey(sysctlPath(roots.procRoot, write.key), write.to);
    outcome.kernel.push(error === undefined ? { ...write, ok: true } : { ...write, ok: false, error });
  }
  if (plan.reserve !== null) outcome.reserved = loadReserved(sysctlPath(roots.procRoot, RESERVED_PORTS), plan.reserve.to, plan.reserve.port);
  // The one value that may go down: pam_limits refuses a login whose nofile exceeds fs.nr_open,
  // so limits.d never holds more than the kernel allows now (it fails when nr_open could not be raised).
  let nofile = plan.nofile;
  const nrOpen = parseValues(readOrEmpty(sysctlPath(roots.procRoot, 'fs.nr_open')), 1)?.[0];
  if (nofile !== null && nrOpen !== undefined && nofile.some((v) => v > nrOpen)) {
    nofile = nofile.map((v) => Math.min(v, nrOpen));
    outcome.nofileCappedAt = nrOpen;
  }
  outcome.files.push(writeDropIn(plan.limitsFile, nofile === null ? null : renderLimits(nofile, plan.maxConnections)));
  outcome.failed = outcome.files.some((f) => f.status === 'failed') || outcome.kernel.some((k) => !k.ok) || outcome.reserved?.ok === false;
  return outcome;
}

/** '*' does not match root in pam_limits, hence the root lines. */
export function renderLimits(nofile: Values, maxConnections: number): string {
  const [soft, hard] = nofile;
  return (
    `${HEADER(maxConnections)}# pam_limits applies it to new login sessions; a systemd service takes LimitNOFILE= instead.\n\n` +
    `*    soft nofile ${soft}\n*    hard nofile ${hard}\nroot soft nofile ${soft}\nroot hard nofile ${hard}\n`
  );
}

/** The limits.d content of a plan, for printing what --apply would write (before any fs.nr_open cap). */
export function plannedLimits(plan: Plan): string | null {
  return plan.nofile === null ? null : renderLimits(plan.nofile, plan.maxConnections);
}

/** The better of the known values, field by field as the rule says. */
function best(rule: Rule, values: ReadonlyArray<Values | null | undefined>): Values {
  return values.filter((v): v is Values => v != null).reduce((a, b) => rule.better(a, b));
}

function writeDropIn(path: string, content: string | null): Outcome['files'][number] {
  if (content === null) return { path, status: 'not needed' };
  const existed = existsSync(path);
  if (existed && readOrEmpty(path) === content) return { path, status: 'unchanged' };
  try {
    mkdirSync(dirname(path), { recursive: true });
    // Write then rename: a reader (systemd-sysctl at boot) never sees half a file.
    const temp = `${path}.tmp-${process.pid}`;
    writeFileSync(temp, content, { mode: 0o644 });
    renameSync(temp, path);
    return { path, status: existed ? 'updated' : 'created' };
  } catch (err) {
    return { path, status: 'failed', error: errorCode(err) };
  }
}

/** Writes one /proc/sys file; undefined when the kernel now holds the value, else why not. */
function loadKey(path: string, values: Values): string | undefined {
  try {
    writeFileSync(path, `${formatValues(values)}\n`);
  } catch (err) {
    return errorCode(err);
  }
  // The kernel may clamp a value instead of refusing it: what it reads back is what counts.
  const now = readOrEmpty(path).trim();
  const held = parseValues(now, values.length);
  return held !== null && sameValues(held, values) ? undefined : `kernel kept ${JSON.stringify(now)}`;
}

/** Writes the reserved-ports list; ok when the kernel now holds `port` in it. */
function loadReserved(path: string, list: string, port: number): { ok: boolean; error?: string } {
  try {
    writeFileSync(path, `${list}\n`);
  } catch (err) {
    return { ok: false, error: errorCode(err) };
  }
  const now = readOrEmpty(path).trim();
  return listHolds(now, port) ? { ok: true } : { ok: false, error: `kernel kept ${JSON.stringify(now)}` };
}

/** The value of `key` in our drop-in, as written; null when it has no such line. */
function readDropInLine(path: string, key: string): string | null {
  for (const line of readOrEmpty(path).split('\n')) {
    const match = /^\s*([\w.-]+)\s*=\s*(.+?)\s*$/.exec(line);
    if (match?.[1] === key) return match[2]!;
  }
  return null;
}

/** `key = value` lines of our own drop-in, for the keys this tool manages. */
function readSysctlDropIn(path: string): Map<string, Values> {
  const held = new Map<string, Values>();
  for (const line of readOrEmpty(path).split('\n')) {
    const match = /^\s*([\w.-]+)\s*=\s*(.+?)\s*$/.exec(line);
    const setting = match && SETTINGS.find((s) => s.key === match[1] && s.key !== NOFILE);
    const values = setting && parseValues(match[2]!, setting.fields);
    if (setting && values) held.set(setting.key, values);
  }
  return held;
}

/** The highest soft and hard nofile of our limits.d drop-in, or null when it has none. */
function readLimitsDropIn(path: string): Values | null {
  let soft = -1;
  let hard = -1;
  for (const line of readOrEmpty(path).split('\n')) {
    const match = /^\s*\S+\s+(soft|hard)\s+nofile\s+(\d+)\s*$/.exec(line);
    if (!match) continue;
    if (match[1] === 'soft') soft = Math.max(soft, Number(match[2]));
    else hard = Math.max(hard, Number(match[2]));
  }
  return soft < 0 || hard < 0 ? null : [soft, hard];
}

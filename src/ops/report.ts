/**
 * What `npm run tune-sysctl` prints: a table for people, or one JSON document for scripts.
 */
import { plannedLimits, type Outcome, type Plan } from './apply.js';
import type { Row } from './host.js';
import { listHolds, RESERVED_PORTS, type ServerPortCheck } from './server-port.js';
import { formatValues, type Values } from './sysctl.js';

export interface TuneView {
  maxConnections: number;
  /** The config file read, or null for the built-in defaults. */
  config: string | null;
  rows: readonly Row[];
  /** The server's port against the ephemeral range; null for port 0. */
  serverPort: ServerPortCheck | null;
  apply?: { plan: Plan; outcome: Outcome | null };
}

export const belowRecommendation = (rows: readonly Row[]): Row[] => rows.filter((r) => r.pass === false);

/** Settings whose value could not be read (no /proc/sys here, or not readable): not known to meet anything. */
export const unreadable = (rows: readonly Row[]): Row[] => rows.filter((r) => r.pass === null);

export const meetsRecommendation = (view: TuneView): boolean =>
  belowRecommendation(view.rows).length === 0 && unreadable(view.rows).length === 0 && view.serverPort?.exposed !== true;

const METHOD = 'write /proc/sys/<key> directly (one result per key; systemd-sysctl loads the drop-in at boot)';

export function renderJson(view: TuneView): string {
  const settings = view.rows.map(({ setting, text, error, recommended, pass }) => ({
    key: setting.key,
    current: text,
    ...(error === undefined ? {} : { error }),
    recommended: formatValues(recommended),
    rule: setting.rule.describe(recommended),
    pass,
    why: setting.why,
  }));
  const doc: Record<string, unknown> = {
    maxConnections: view.maxConnections,
    config: view.config,
    ok: meetsRecommendation(view),
    settings,
    serverPort: view.serverPort && { port: view.serverPort.port, range: formatValues(view.serverPort.range), reserved: view.serverPort.reserved, exposed: view.serverPort.exposed },
  };
  if (view.apply) {
    const { plan, outcome } = view.apply;
    const change = (k: { key: string; from: Values; to: Values }) => ({ key: k.key, from: formatValues(k.from), to: formatValues(k.to) });
    doc.apply = outcome
      ? {
          done: true,
          method: METHOD,
          files: outcome.files,
          ...(outcome.reserved === undefined ? {} : { reservedPorts: { to: plan.reserve!.to, ...outcome.reserved } }),
          kernel: outcome.kernel.map((k) => ({ ...change(k), ok: k.ok, ...(k.error === undefined ? {} : { error: k.error }) })),
          ...(outcome.nofileCappedAt === undefined ? {} : { nofileCappedAt: outcome.nofileCappedAt }),
          overriddenAtBoot: plan.overriddenAtBoot,
        }
      : {
          done: false,
          reason: 'not root',
          method: METHOD,
          files: [
            { path: plan.sysctlFile, content: plan.sysctlContent },
            { path: plan.limitsFile, content: plannedLimits(plan) },
          ],
          kernel: plan.kernel.map(change),
          ...(plan.reserve === null ? {} : { reservedPorts: { from: plan.reserve.from, to: plan.reserve.to } }),
          overriddenAtBoot: plan.overriddenAtBoot,
        };
  }
  return JSON.stringify(doc, null, 2);
}

export function renderText(view: TuneView): string {
  const out: string[] = [];
  const source = view.config ?? 'built-in defaults';
  out.push(`Host settings for max_connections=${view.maxConnections} (config: ${source})`, '');
  const table = view.rows.map(({ setting, text, error, recommended, pass }) => [
    setting.key,
    error === undefined ? (text ?? '') : `? (${error})`,
    setting.rule.describe(recommended),
    pass === null ? '?' : pass ? 'ok' : 'LOW',
  ]);
  out.push(...columns([['setting', 'current', 'recommended', ''], ...table]), '');
  const below = belowRecommendation(view.rows);
  const unknown = unreadable(view.rows);
  if (below.length > 0) out.push(`${below.length} below recommendation: ${below.map((r) => r.setting.key).join(', ')}. As root: npm run tune-sysctl -- --apply`);
  if (unknown.length > 0) out.push(`${unknown.length} could not be read: ${unknown.map((r) => r.setting.key).join(', ')} (is /proc/sys readable here?)`);
  if (below.length === 0 && unknown.length === 0) out.push('Every setting meets the recommendation.');
  out.push(...serverPortLines(view.serverPort));
  out.push('', 'Why:');
  for (const { setting } of view.rows) out.push(`  ${setting.key}: ${setting.why}`);
  if (view.apply) out.push('', ...renderApply(view.apply.plan, view.apply.outcome), ...bootWarnings(view.apply.plan));
  return out.join('\n');
}

function serverPortLines(check: ServerPortCheck | null): string[] {
  if (check === null) return [];
  const range = `net.ipv4.ip_local_port_range ${formatValues(check.range)}`;
  if (!check.exposed) return [`Server port ${check.port}: ${listHolds(check.reserved, check.port) ? `reserved (${RESERVED_PORTS})` : `outside ${range}`}.`];
  return [
    `Server port ${check.port} lies inside ${range} and is not in ${RESERVED_PORTS}: an outgoing connection (a proxy's, the load tester's) ` +
      'can take it while the server restarts, which then fails with "cannot listen". As root: npm run tune-sysctl -- --apply (reserves it).',
  ];
}

/** Other files that undo a value of ours at every boot: the running value stays until then. */
function bootWarnings(plan: Plan): string[] {
  if (plan.overriddenAtBoot.length === 0) return [];
  return [
    `WARNING: at boot these files are read after ${plan.sysctlFile} and set its keys again; remove or raise them, or the values above last only until the next boot:`,
    ...plan.overriddenAtBoot.map((o) => `  ${o.file}: ${o.key} = ${o.value}`),
  ];
}

function renderApply(plan: Plan, outcome: Outcome | null): string[] {
  const out: string[] = [];
  const arrow = (k: { key: string; from: Values; to: Values }): string[] => [k.key, formatValues(k.from), '->', formatValues(k.to)];
  if (outcome === null) {
    out.push('Not root: nothing written. As root, --apply would:');
    for (const [path, content] of [
      [plan.sysctlFile, plan.sysctlContent],
      [plan.limitsFile, plannedLimits(plan)],
    ] as const) {
      out.push(content === null ? `  leave ${path} alone (nothing to raise)` : `  write ${path}:`);
      if (content !== null) out.push(...content.trimEnd().split('\n').map((line) => `    | ${line}`.trimEnd()));
    }
    out.push(plan.kernel.length === 0 ? '  load nothing (no running value to raise)' : `  ${METHOD}:`);
    out.push(...columns(plan.kernel.map(arrow)).map((line) => `    ${line}`));
    if (plan.reserve !== null) out.push(`  reserve port ${plan.reserve.port}: ${RESERVED_PORTS} ${JSON.stringify(plan.reserve.from)} -> ${JSON.stringify(plan.reserve.to)}`);
    return out;
  }
  out.push('Applied:');
  for (const file of outcome.files) out.push(`  ${file.path}: ${file.status}${file.error ? ` (${file.error})` : ''}`);
  out.push(outcome.kernel.length === 0 ? '  no running value to raise' : `  loaded: ${METHOD}:`);
  const results = outcome.kernel.map((k) => [...arrow(k), k.ok ? 'ok' : `FAILED ${k.error ?? ''}`]);
  out.push(...columns(results).map((line) => `    ${line}`));
  if (outcome.reserved !== undefined) out.push(`  reserved port ${plan.reserve!.port} (${RESERVED_PORTS} = ${plan.reserve!.to}): ${outcome.reserved.ok ? 'ok' : `FAILED ${outcome.reserved.error ?? ''}`}`);
  if (outcome.kernel.some((k) => !k.ok)) {
    out.push('  A key that failed keeps its old value; in a container, set it on the host or through the runtime (docker run --sysctl for net.* keys).');
  }
  if (outcome.nofileCappedAt !== undefined) {
    out.push(`  nofile in limits.d capped at fs.nr_open (${outcome.nofileCappedAt}): a login would fail above it.`);
  }
  if (plan.nofile !== null) {
    out.push(
      `  nofile ${formatValues(plan.nofile)} applies to new login sessions only: start pm2 (or the server) from one, ` +
        'or set LimitNOFILE= in its systemd unit.',
    );
  }
  return out;
}

/** Left-aligned columns, two spaces apart. */
function columns(rows: readonly string[][]): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd());
}

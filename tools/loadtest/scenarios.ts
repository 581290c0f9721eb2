/**
 * Scenarios are data: config/scenarios.yaml (or any file given with --scenarios-file),
 * validated once with zod. A typo fails loudly and names the key (`scenarios.churn.rates:
 * unrecognized key "pubb"`) instead of silently running a different test.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { OcsError } from '../../src/protocol/errors.js';

const Rates = z
  .object({
    pub: z.number().min(0).default(0),
    send: z.number().min(0).default(0),
    ping: z.number().min(0).default(0),
  })
  .strict();

const Ramp = z
  .object({
    /** connections added per second */
    rate: z.number().positive(),
    /** stop adding at this many connections */
    max: z.number().int().positive(),
    /** stop adding when errors in the last second exceed this fraction of operations */
    error_threshold: z.number().min(0).max(1).default(0.05),
  })
  .strict();

const Spike = z
  .object({
    /** seconds after the measurement starts */
    at_s: z.number().min(0),
    /** extra connections opened at once */
    connections: z.number().int().min(0),
    hold_s: z.number().positive(),
    /** every connection's message rates are multiplied by this during the spike */
    rate_multiplier: z.number().min(1).default(1),
  })
  .strict();

const Churn = z
  .object({
    /** connections closed and reopened per second */
    rate: z.number().positive(),
  })
  .strict();

const Reconnect = z
  .object({
    /** seconds after the measurement starts */
    at_s: z.number().min(0),
    /** share of the connections dropped (their TCP connection cut, no close handshake) */
    share: z.number().gt(0).max(1),
    /** seconds each dropped user stays away before it reconnects and joins with `since` */
    offline_s: z.number().min(0),
  })
  .strict();

const Drift = z.object({ window_s: z.number().positive() }).strict();

/** Keys a scenario may take from `defaults`. */
const Tunables = {
  warmup_s: z.number().min(0),
  drain_s: z.number().min(0),
  connect_rate: z.number().positive(),
  message_bytes: z.number().int().min(64).max(1_000_000),
  group_size: z.number().int().positive(),
  in_flight: z.number().int().positive(),
  pri: z.number().int().min(0).max(3),
  rates: Rates,
};

const Defaults = z.object(Tunables).partial().strict();

const Scenario = z
  .object({
    description: z.string().default(''),
    kind: z.enum(['steady', 'ramp', 'spike', 'churn', 'reconnect']).default('steady'),
    suites: z.array(z.enum(['quick', 'full'])).default(['full']),
    connections: z.number().int().min(1),
    duration_s: z.number().positive(),
    ramp: Ramp.optional(),
    spike: Spike.optional(),
    churn: Churn.optional(),
    reconnect: Reconnect.optional(),
    drift: Drift.optional(),
    ...Tunables,
  })
  .partial({ warmup_s: true, drain_s: true, connect_rate: true, message_bytes: true, group_size: true, in_flight: true, pri: true, rates: true })
  .strict()
  .superRefine((s, ctx) => {
    for (const kind of ['ramp', 'spike', 'churn', 'reconnect'] as const) {
      if (s.kind === kind && s[kind] === undefined) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: [kind], message: `kind "${kind}" needs a "${kind}" section` });
      }
    }
  });

const ScenarioFile = z
  .object({
    defaults: Defaults.default({}),
    scenarios: z.record(z.string().regex(/^[a-z0-9][a-z0-9_-]*$/, 'scenario names are lower-case letters, digits, - and _'), z.unknown()),
  })
  .strict();

/** A scenario with every default filled in: what the generator runs. */
export interface ScenarioSpec {
  name: string;
  description: string;
  kind: 'steady' | 'ramp' | 'spike' | 'churn' | 'reconnect';
  suites: Array<'quick' | 'full'>;
  connections: number;
  durationS: number;
  warmupS: number;
  drainS: number;
  connectRate: number;
  messageBytes: number;
  groupSize: number;
  inFlight: number;
  pri: number;
  rates: { pub: number; send: number; ping: number };
  ramp?: { rate: number; max: number; errorThreshold: number };
  spike?: { atS: number; connections: number; holdS: number; rateMultiplier: number };
  churn?: { rate: number };
  /** Drop `share` of the connections at `atS`; each comes back after `offlineS` and recovers with `since` (groups keep history). */
  reconnect?: { atS: number; share: number; offlineS: number };
  drift?: { windowS: number };
}

const BUILTIN_DEFAULTS = {
  warmup_s: 10,
  drain_s: 3,
  connect_rate: 400,
  message_bytes: 256,
  group_size: 20,
  in_flight: 256,
  pri: 1,
  rates: { pub: 0.5, send: 0.05, ping: 0.2 },
};

function formatIssue(where: string, issue: z.ZodIssue): string {
  const path = [where, ...issue.path.map(String)].filter((p) => p !== '').join('.');
  if (issue.code === z.ZodIssueCode.unrecognized_keys) {
    return `${path}: unrecognized key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
  }
  return `${path}: ${issue.message}`;
}

function fail(source: string, issues: string[]): never {
  throw new OcsError('E_CONFIG', `${source}: invalid scenarios file\n  ${issues.join('\n  ')}`);
}

/** Parses and validates scenario data (already read from YAML/JSON). */
export function parseScenarios(data: unknown, source = 'scenarios'): ScenarioSpec[] {
  const file = ScenarioFile.safeParse(data);
  if (!file.success) fail(source, file.error.issues.map((i) => formatIssue('', i)));
  const defaults = { ...BUILTIN_DEFAULTS, ...file.data.defaults, rates: { ...BUILTIN_DEFAULTS.rates, ...file.data.defaults.rates } };
  const specs: ScenarioSpec[] = [];
  const issues: string[] = [];
  for (const [name, raw] of Object.entries(file.data.scenarios)) {
    const parsed = Scenario.safeParse(raw);
    if (!parsed.success) {
      issues.push(...parsed.error.issues.map((i) => formatIssue(`scenarios.${name}`, i)));
      continue;
    }
    const s = parsed.data;
    specs.push({
      name,
      description: s.description,
      kind: s.kind,
      suites: s.suites,
      connections: s.connections,
      durationS: s.duration_s,
      warmupS: s.warmup_s ?? defaults.warmup_s,
      drainS: s.drain_s ?? defaults.drain_s,
      connectRate: s.connect_rate ?? defaults.connect_rate,
      messageBytes: s.message_bytes ?? defaults.message_bytes,
      groupSize: s.group_size ?? defaults.group_size,
      inFlight: s.in_flight ?? defaults.in_flight,
      pri: s.pri ?? defaults.pri,
      rates: s.rates ?? defaults.rates,
      ...(s.ramp && { ramp: { rate: s.ramp.rate, max: s.ramp.max, errorThreshold: s.ramp.error_threshold } }),
      ...(s.spike && { spike: { atS: s.spike.at_s, connections: s.spike.connections, holdS: s.spike.hold_s, rateMultiplier: s.spike.rate_multiplier } }),
      ...(s.churn && { churn: { rate: s.churn.rate } }),
      ...(s.reconnect && { reconnect: { atS: s.reconnect.at_s, share: s.reconnect.share, offlineS: s.reconnect.offline_s } }),
      ...(s.drift && { drift: { windowS: s.drift.window_s } }),
    });
  }
  if (issues.length > 0) fail(source, issues);
  if (specs.length === 0) fail(source, ['scenarios: at least one scenario is needed']);
  return specs;
}

/** Reads a scenarios file: YAML, or JSON (YAML is a superset of JSON). */
export function loadScenarios(file: string): ScenarioSpec[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new OcsError('E_CONFIG', `cannot read scenarios file ${file}: ${(err as Error).message}`, { cause: err });
  }
  let data: unknown;
  try {
    data = parseYaml(text);
  } catch (err) {
    throw new OcsError('E_CONFIG', `${file}: not valid YAML/JSON: ${(err as Error).message}`, { cause: err });
  }
  return parseScenarios(data, file);
}

export interface SelectOptions {
  quick?: boolean;
  names?: string[];
}

/** The scenarios a run covers: named ones (in the order given), else the quick or full suite. */
export function selectScenarios(all: ScenarioSpec[], opts: SelectOptions): ScenarioSpec[] {
  if (opts.names && opts.names.length > 0) {
    return opts.names.map((name) => {
      const found = all.find((s) => s.name === name);
      if (!found) throw new OcsError('E_CONFIG', `unknown scenario "${name}"; known: ${all.map((s) => s.name).join(', ')}`);
      return found;
    });
  }
  const suite = opts.quick ? 'quick' : 'full';
  return all.filter((s) => s.suites.includes(suite));
}

export interface Overrides {
  durationS?: number;
  warmupS?: number;
  drainS?: number;
  connections?: number;
}

/**
 * Applies command-line overrides. --duration scales a spike's timing with it so the spike
 * still happens inside the shorter window; --connections scales the spike's burst and caps
 * the ramp at the new figure.
 */
export function applyOverrides(spec: ScenarioSpec, o: Overrides): ScenarioSpec {
  const out: ScenarioSpec = { ...spec, rates: { ...spec.rates } };
  if (o.durationS !== undefined) {
    const scale = o.durationS / spec.durationS;
    out.durationS = o.durationS;
    if (spec.spike) out.spike = { ...spec.spike, atS: spec.spike.atS * scale, holdS: Math.max(spec.spike.holdS * scale, 0.1) };
    if (spec.reconnect) out.reconnect = { ...spec.reconnect, atS: spec.reconnect.atS * scale, offlineS: Math.min(spec.reconnect.offlineS, o.durationS / 3) };
    if (spec.drift) out.drift = { windowS: Math.max(1, Math.min(spec.drift.windowS, o.durationS / 3)) };
  }
  if (o.warmupS !== undefined) out.warmupS = o.warmupS;
  if (o.drainS !== undefined) out.drainS = o.drainS;
  if (o.connections !== undefined) {
    const scale = o.connections / spec.connections;
    out.connections = o.connections;
    out.groupSize = Math.min(spec.groupSize, o.connections);
    if (spec.spike) out.spike = { ...(out.spike ?? spec.spike), connections: Math.round(spec.spike.connections * scale) };
    if (spec.ramp) out.ramp = { ...spec.ramp, max: Math.max(o.connections, Math.round(spec.ramp.max * scale)) };
    if (spec.churn) out.churn = { rate: Math.max(1, spec.churn.rate * scale) };
  }
  return out;
}

/**
 * The members a pub reaches on average: connection i is in group floor(i / group_size), so when
 * group_size does not divide the connections the last group is smaller (30 in groups of 25:
 * 25 and 5, a mean of (25² + 5²) / 30).
 */
export function meanFanout(spec: ScenarioSpec): number {
  const size = Math.min(spec.groupSize, spec.connections);
  if (size <= 0) return 0;
  const full = Math.floor(spec.connections / size);
  const rest = spec.connections - full * size;
  return (full * size * size + rest * rest) / spec.connections;
}

/** Deliveries per second the scenario offers at steady state (what "keeping up" means). */
export function offeredRates(spec: ScenarioSpec): { pubPerS: number; sendPerS: number; pingPerS: number; deliveriesPerS: number } {
  const pubPerS = spec.connections * spec.rates.pub;
  return {
    pubPerS,
    sendPerS: spec.connections * spec.rates.send,
    pingPerS: spec.connections * spec.rates.ping,
    deliveriesPerS: pubPerS * meanFanout(spec) + spec.connections * spec.rates.send,
  };
}

/**
 * Alerts on the seed's thresholds (monitoring.alerts), and on a shard's link that does not
 * drain (monitoring.link_stuck_after: a stalled or hung shard): evaluated once per interval on merged
 * figures, raised when a value goes over its threshold and cleared only once it is back under
 * threshold × clear_ratio (hysteresis: a value hovering at the threshold does not flap). Each
 * change of state is one log line with the value; /alerts lists the active ones and the recent
 * changes (the last `history`).
 */
import type { Config } from '../config/schema.js';
import type { Logger } from '../util/logger.js';

export type MonitoringSettings = Config['websocket']['monitoring'];
export type AlertSettings = MonitoringSettings['alerts'];

/** What the rules read, for one interval. A latency with fewer than min_samples samples reads as clear. */
export interface AlertInputs {
  latencyMs: { pub: LatencyFigures; send: LatencyFigures };
  cpuRatio: number;
  memoryRatio: number;
  /** Errors counted and frames received during the interval, over all shards. */
  errors: number;
  framesIn: number;
  /** Messages the broker holds that are not yet acknowledged. */
  queueDepth: number;
  /** The longest any shard's link has held records without draining, seconds (0: none waits). */
  longestLinkWaitS: number;
  /** The share of the store's file system in use; null without a store on this node (cluster mode). */
  diskUsedRatio: number | null;
}

interface LatencyFigures {
  count: number;
  p95: number;
  p99: number;
}

interface Rule {
  name: string;
  unit: string;
  threshold: number;
  /** null: not enough data this interval (reads as clear). */
  value(inputs: AlertInputs): number | null;
}

export interface AlertEvent {
  alert: string;
  state: 'raised' | 'cleared';
  value: number;
  threshold: number;
  unit: string;
  at: string;
}

export interface ActiveAlert {
  alert: string;
  value: number;
  threshold: number;
  unit: string;
  since: string;
}

/** Per alert, for /metrics: whether it is active, its last value, and how often it was raised. */
export interface AlertStatus {
  alert: string;
  active: boolean;
  value: number;
  threshold: number;
  raised: number;
}

export function alertRules(monitoring: MonitoringSettings): Rule[] {
  const s = monitoring.alerts;
  const latency = (metric: 'pub' | 'send', p: 'p95' | 'p99', threshold: number): Rule => ({
    name: `${metric}_latency_${p}`,
    unit: 'ms',
    threshold,
    value: (i) => (i.latencyMs[metric].count >= Math.max(1, s.min_samples) ? i.latencyMs[metric][p] : null),
  });
  return [
    latency('pub', 'p95', s.latency_p95_ms),
    latency('pub', 'p99', s.latency_p99_ms),
    latency('send', 'p95', s.latency_p95_ms),
    latency('send', 'p99', s.latency_p99_ms),
    { name: 'cpu', unit: '%', threshold: s.cpu_percent, value: (i) => i.cpuRatio * 100 },
    { name: 'memory', unit: '%', threshold: s.memory_percent, value: (i) => i.memoryRatio * 100 },
    { name: 'error_rate', unit: '%', threshold: s.error_rate_percent, value: (i) => (i.framesIn >= Math.max(1, s.min_samples) ? (i.errors / i.framesIn) * 100 : null) },
    { name: 'queue_depth', unit: 'messages', threshold: s.queue_depth, value: (i) => i.queueDepth },
    // Before the store has to refuse sends (E_STORE_UNAVAILABLE) for want of space.
    { name: 'disk', unit: '%', threshold: s.disk_used_percent, value: (i) => (i.diskUsedRatio === null ? null : i.diskUsedRatio * 100) },
    // What /health calls a stuck link: a shard that reads nothing (a stall, a hot loop) shows here.
    { name: 'link_stuck', unit: 's', threshold: monitoring.link_stuck_after, value: (i) => i.longestLinkWaitS },
  ];
}

interface State {
  active: ActiveAlert | null;
  value: number;
  raised: number;
}

export class Alerts {
  private readonly rules: Rule[];
  private readonly states = new Map<string, State>();
  private readonly recent: AlertEvent[] = [];

  private readonly settings: AlertSettings;

  constructor(
    monitoring: MonitoringSettings,
    private readonly log: Logger,
  ) {
    this.settings = monitoring.alerts;
    this.rules = this.settings.enabled ? alertRules(monitoring) : [];
    for (const rule of this.rules) this.states.set(rule.name, { active: null, value: 0, raised: 0 });
  }

  evaluate(inputs: AlertInputs, now = Date.now()): void {
    for (const rule of this.rules) {
      const state = this.states.get(rule.name)!;
      const value = rule.value(inputs);
      state.value = value ?? 0;
      const shown = round(state.value);
      if (state.active === null && value !== null && value > rule.threshold) {
        state.active = { alert: rule.name, value: shown, threshold: rule.threshold, unit: rule.unit, since: new Date(now).toISOString() };
        state.raised++;
        this.remember({ alert: rule.name, state: 'raised', value: shown, threshold: rule.threshold, unit: rule.unit, at: state.active.since });
        this.log.warn({ alert: rule.name, value: shown, threshold: rule.threshold, unit: rule.unit }, 'alert raised');
      } else if (state.active !== null && (value === null || value < rule.threshold * this.settings.clear_ratio)) {
        state.active = null;
        this.remember({ alert: rule.name, state: 'cleared', value: shown, threshold: rule.threshold, unit: rule.unit, at: new Date(now).toISOString() });
        this.log.info({ alert: rule.name, value: shown, threshold: rule.threshold, unit: rule.unit }, 'alert cleared');
      } else if (state.active !== null) {
        state.active.value = shown;
      }
    }
  }

  active(): ActiveAlert[] {
    const out: ActiveAlert[] = [];
    for (const state of this.states.values()) if (state.active) out.push(state.active);
    return out;
  }

  /** The last `history` changes, oldest first. */
  history(): readonly AlertEvent[] {
    return this.recent;
  }

  statuses(): AlertStatus[] {
    return this.rules.map((rule) => {
      const state = this.states.get(rule.name)!;
      return { alert: rule.name, active: state.active !== null, value: state.value, threshold: rule.threshold, raised: state.raised };
    });
  }

  private remember(event: AlertEvent): void {
    this.recent.push(event);
    if (this.recent.length > this.settings.history) this.recent.splice(0, this.recent.length - this.settings.history);
  }
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

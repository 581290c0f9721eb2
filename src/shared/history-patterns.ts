/**
 * Which groups keep history (websocket.history): the first entry whose pattern matches a
 * group decides its size and ttl. Both the shards (which route such groups' pubs and joins
 * through the broker) and the broker (which keeps the history) ask it, from the same config.
 */
import type { Config } from '../config/schema.js';

export type HistoryRule = Config['websocket']['history'][number];

export class HistoryPatterns {
  /** The patterns, in the config's order (what a codec pool task carries: matchesHistory()). */
  readonly patterns: readonly string[];
  private readonly exact = new Map<string, HistoryRule>();
  private readonly prefixes: Array<{ prefix: string; rule: HistoryRule; order: number }> = [];
  private readonly exactOrder = new Map<string, number>();

  constructor(rules: readonly HistoryRule[]) {
    this.patterns = rules.map((rule) => rule.pattern);
    rules.forEach((rule, order) => {
      if (rule.pattern.endsWith('*')) this.prefixes.push({ prefix: rule.pattern.slice(0, -1), rule, order });
      else if (!this.exact.has(rule.pattern)) {
        this.exact.set(rule.pattern, rule);
        this.exactOrder.set(rule.pattern, order);
      }
    });
  }

  /** Whether any group keeps history: without rules, nothing on the pub path asks again. */
  get any(): boolean {
    return this.exact.size > 0 || this.prefixes.length > 0;
  }

  /** The rule for `group` (the first matching in the config's order), or null: no history. */
  ruleOf(group: string): HistoryRule | null {
    const exact = this.exact.get(group);
    const exactOrder = exact === undefined ? Infinity : this.exactOrder.get(group)!;
    for (const { prefix, rule, order } of this.prefixes) {
      if (order > exactOrder) break;
      if (group.startsWith(prefix)) return rule;
    }
    return exact ?? null;
  }

  keeps(group: string): boolean {
    return this.ruleOf(group) !== null;
  }
}

/** Whether `group` keeps history under one of `patterns` (HistoryPatterns.patterns), which rule aside: for a codec pool thread. */
export function matchesHistory(patterns: readonly string[], group: string): boolean {
  for (const pattern of patterns) if (pattern.endsWith('*') ? group.startsWith(pattern.slice(0, -1)) : group === pattern) return true;
  return false;
}

// bench:send's repetitions reduced per server and store.sync mode to a median and a spread per
// figure (spread() of the broadcast benchmark's repetitions), and, with a baseline server, this
// server's CPU per message over the baseline's within each repetition before the median is taken.
import { spread, type Spread } from './repetitions.js';

type Latency = { p50: number; p99: number; max: number };

/** One run of one server in one mode (durable-send.ts). */
export interface SendRun {
  server: 'this' | 'baseline';
  sync: string;
  offered_per_s: number;
  stored_per_s: number;
  delivered_and_acked_per_s: number;
  send_to_stored_ms: Latency;
  send_to_delivery_ms: Latency;
  errors: number;
  unanswered_sends: number;
  server_cpu_s: number;
  server_cpu_us_per_stored: number | null;
  server_cpu_ms_per_s: number;
  server_cpu_at_ready_s: number;
  server_cpu_total_s: number;
}

export interface SendSummary {
  server: 'this' | 'baseline';
  sync: string;
  runs: number;
  stored_per_s: Spread | null;
  send_to_delivery_p50_ms: Spread | null;
  send_to_delivery_p99_ms: Spread | null;
  send_to_stored_p50_ms: Spread | null;
  server_cpu_us_per_stored: Spread | null;
  server_cpu_ms_per_s: Spread | null;
  server_cpu_at_ready_s: Spread | null;
  server_cpu_total_s: Spread | null;
  /** This server's CPU per stored message over the baseline's of the same repetition (null without a baseline). */
  cpu_vs_baseline: Spread | null;
}

export function summarizeSendRuns(runs: readonly SendRun[]): SendSummary[] {
  const groups = new Map<string, SendRun[]>();
  for (const run of runs) {
    const key = `${run.server}|${run.sync}`;
    groups.set(key, [...(groups.get(key) ?? []), run]);
  }
  return [...groups.values()].map((group) => {
    const { server, sync } = group[0]!;
    const of = (pick: (run: SendRun) => number | null): Spread | null => spread(group.map((run) => pick(run) ?? NaN));
    const baseline = runs.filter((run) => run.server === 'baseline' && run.sync === sync);
    // The nth run of this server pairs with the nth of the baseline: one repetition each.
    const ratios = server === 'this' && baseline.length > 0 ? group.map((run, i) => (run.server_cpu_us_per_stored ?? NaN) / (baseline[i]?.server_cpu_us_per_stored ?? NaN)) : [];
    return {
      server,
      sync,
      runs: group.length,
      stored_per_s: of((run) => run.stored_per_s),
      send_to_delivery_p50_ms: of((run) => run.send_to_delivery_ms.p50),
      send_to_delivery_p99_ms: of((run) => run.send_to_delivery_ms.p99),
      send_to_stored_p50_ms: of((run) => run.send_to_stored_ms.p50),
      server_cpu_us_per_stored: of((run) => run.server_cpu_us_per_stored),
      server_cpu_ms_per_s: of((run) => run.server_cpu_ms_per_s),
      server_cpu_at_ready_s: of((run) => run.server_cpu_at_ready_s),
      server_cpu_total_s: of((run) => run.server_cpu_total_s),
      cpu_vs_baseline: ratios.length > 0 ? spread(ratios) : null,
    };
  });
}

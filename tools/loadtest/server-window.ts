/**
 * The server's own latency over a scenario's measured window, beside the load tester's end-to-end
 * figures. An ocs-realtime server publishes its merged since-start HDR histograms at
 * GET /stats/histograms (rendered once per metrics interval, on demand); the tester reads them
 * at the start and at the end of the measured window and subtracts the first from the second:
 * the window's exact percentiles (HDR precision, merged over the server's threads, never an
 * average of per-interval percentiles). Each read waits for the first render after it was made,
 * so the server's window is as long as the measured one and starts and ends at most one metrics
 * interval after it. A server without the endpoint, or one that restarted in between, has no
 * window ("not available" and why).
 */
import * as hdr from 'hdr-histogram-js';
import type { Histogram } from 'hdr-histogram-js';
import { serverUrl } from './server-stats.js';

/** What the server measures (src/metrics/latencies.ts), in the order reports show them. */
export const SERVER_LATENCIES = ['pub', 'send', 'ack', 'ping', 'event_loop', 'commit'] as const;

export interface WindowLatency {
  count: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  p999Ms: number;
}

export interface ServerWindow {
  available: boolean;
  reason?: string;
  /** How it was read, for the report. */
  method: string;
  /** The server's render times that bound the window (its clock). */
  from?: string;
  to?: string;
  latencies: Record<string, WindowLatency>;
}

export interface HistogramsDoc {
  metrics_at: string;
  started_at: string;
  /** The server's metrics interval (older servers leave it out: then the reader polls). */
  interval_s?: number;
  histograms: Record<string, string>;
}

export const WINDOW_METHOD = 'GET /stats/histograms at the start and the end of the measured window, the first subtracted from the second';
const POLL_MS = 100;
/** How long after its due time a render is looked for: it is spread over a few event-loop turns. */
const RENDER_SLACK_MS = 50;
/** How long a mark waits for the server's next render (its interval is 1 s by default). */
const MARK_TIMEOUT_MS = 15_000;

export interface WindowTarget {
  host: string;
  port: number;
  /** websocket.monitoring.token of the server, when it has one. */
  token?: string;
  /** The server speaks TLS: its HTTP endpoints are https://. */
  tls?: boolean;
}

/** The first /stats/histograms the server renders after this call; a string says why there is none. */
export async function markServerHistograms(target: WindowTarget, signal?: AbortSignal): Promise<HistogramsDoc | string> {
  const first = await readDoc(target);
  if (typeof first === 'string' && !first.startsWith('503')) return first;
  const seen = typeof first === 'string' ? null : first.metrics_at;
  const deadline = Date.now() + MARK_TIMEOUT_MS;
  // Wait for the next render, then poll: each read costs the reader a fetch and a parse, and
  // where the reader is also the load (the broadcast benchmark's one thread) reads every 100 ms
  // for a whole interval delayed the deliveries it timed.
  let wait = typeof first === 'string' ? POLL_MS : untilNextRender(first);
  while (Date.now() < deadline && !signal?.aborted) {
    await new Promise((resolve) => setTimeout(resolve, Math.min(wait, Math.max(0, deadline - Date.now()))));
    wait = POLL_MS;
    const doc = await readDoc(target);
    if (typeof doc !== 'string' && doc.metrics_at !== seen) return doc;
    if (typeof doc === 'string' && !doc.startsWith('503')) return doc;
  }
  return `no new render of /stats/histograms within ${MARK_TIMEOUT_MS / 1000} s`;
}

/**
 * Ms until just after the render that follows `doc` (its time plus the server's interval), at
 * least POLL_MS and at most one interval (the server's clock may not be ours: another host) or
 * MARK_TIMEOUT_MS (the interval is what the server says).
 */
export function untilNextRender(doc: Pick<HistogramsDoc, 'metrics_at' | 'interval_s'>, now = Date.now()): number {
  const intervalMs = typeof doc.interval_s === 'number' && doc.interval_s > 0 ? doc.interval_s * 1000 : 0;
  if (intervalMs === 0) return POLL_MS;
  const due = Date.parse(doc.metrics_at) + intervalMs + RENDER_SLACK_MS - now;
  return Math.max(POLL_MS, Math.min(intervalMs, MARK_TIMEOUT_MS, Number.isFinite(due) ? due : POLL_MS));
}

async function readDoc(target: WindowTarget): Promise<HistogramsDoc | string> {
  try {
    const res = await fetch(serverUrl(target.host, target.port, '/stats/histograms', target.tls), {
      headers: target.token ? { authorization: `Bearer ${target.token}` } : {},
      signal: AbortSignal.timeout(2000),
    });
    const text = await res.text();
    if (res.status === 404) return 'the server has no GET /stats/histograms (not ocs-realtime, or metrics collection off)';
    if (res.status === 401) return 'GET /stats/histograms needs the monitoring token (--monitoring-token or WEBSOCKET_MONITORING_TOKEN)';
    if (!res.ok) return `${res.status} from GET /stats/histograms`;
    const doc = JSON.parse(text) as HistogramsDoc;
    if (typeof doc.metrics_at !== 'string' || typeof doc.histograms !== 'object' || doc.histograms === null) return 'GET /stats/histograms answered an unknown shape';
    return doc;
  } catch (err) {
    return `GET /stats/histograms: ${(err as Error).message}`;
  }
}

/** The window between two marks: per latency, the end's histogram less the start's. */
export function serverWindow(start: HistogramsDoc | string, end: HistogramsDoc | string): ServerWindow {
  const none = (reason: string): ServerWindow => ({ available: false, reason, method: WINDOW_METHOD, latencies: {} });
  if (typeof start === 'string') return none(start);
  if (typeof end === 'string') return none(end);
  if (start.started_at !== end.started_at) return none('the server restarted during the window');
  const latencies: Record<string, WindowLatency> = {};
  for (const name of SERVER_LATENCIES) {
    const after = decode(end.histograms[name]);
    const before = decode(start.histograms[name]);
    try {
      // Throws where a bucket holds fewer samples at the end than at the start.
      if (after.totalCount < before.totalCount) throw new Error('fewer samples');
      after.subtract(before);
    } catch {
      return none(`the server's ${name} histogram lost samples during the window`);
    }
    latencies[name] = summarizeWindow(after);
  }
  return { available: true, method: WINDOW_METHOD, from: start.metrics_at, to: end.metrics_at, latencies };
}

function decode(encoded: string | undefined): Histogram {
  if (encoded) return hdr.decodeFromCompressedBase64(encoded, 64, false);
  return hdr.build({ bitBucketSize: 64, autoResize: true, useWebAssembly: false });
}

const ms = (us: number): number => Math.round(us) / 1000;

function summarizeWindow(h: Histogram): WindowLatency {
  if (h.totalCount === 0) return { count: 0, p50Ms: 0, p95Ms: 0, p99Ms: 0, p999Ms: 0 };
  return { count: h.totalCount, p50Ms: ms(h.getValueAtPercentile(50)), p95Ms: ms(h.getValueAtPercentile(95)), p99Ms: ms(h.getValueAtPercentile(99)), p999Ms: ms(h.getValueAtPercentile(99.9)) };
}

/**
 * The server's own view, from GET /stats: its merged percentiles and resource use, shown
 * beside the load tester's figures. The endpoint's shape is the server's business, so this
 * reads it tolerantly: any object with p50/p95/p99 fields is a latency metric, any numeric
 * field whose name says memory or CPU is a resource figure. Absent or failing: "not available".
 */
export interface ServerLatency {
  /** Dotted path of the metric in the /stats JSON, e.g. "latency.delivery". */
  metric: string;
  p50: number;
  p95: number;
  p99: number;
  /** The unit the server's field names suggest ("ms" unless they say "us"/"ns"). */
  unit: string;
}

export interface ServerStats {
  available: boolean;
  /** Why not, when not available (HTTP status, connection error). */
  reason?: string;
  latencies: ServerLatency[];
  resources: Record<string, number>;
  raw?: unknown;
}

/** The URL of `path` on the server's HTTP endpoints: https:// when it speaks TLS (--tls). */
export function serverUrl(host: string, port: number, path: string, tls = false): string {
  return `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}${path}`;
}

export async function fetchServerStats(host: string, port: number, timeoutMs = 2000, token?: string, tls = false): Promise<ServerStats> {
  const url = serverUrl(host, port, '/stats', tls);
  try {
    const res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return { available: false, reason: `HTTP ${res.status}`, latencies: [], resources: {} };
    const raw = (await res.json()) as unknown;
    return { available: true, ...extractStats(raw), raw };
  } catch (err) {
    return { available: false, reason: (err as Error).message, latencies: [], resources: {} };
  }
}

const PCT = { p50: /^p50(_?ms|_?us|_?ns)?$/i, p95: /^p95(_?ms|_?us|_?ns)?$/i, p99: /^p99(_?ms|_?us|_?ns)?$/i };
const RESOURCE = /rss|heap|memory|mem_|cpu|connections|uptime/i;

export function extractStats(raw: unknown): { latencies: ServerLatency[]; resources: Record<string, number> } {
  const latencies: ServerLatency[] = [];
  const resources: Record<string, number> = {};
  const walk = (v: unknown, path: string, depth: number): void => {
    if (depth > 6 || v === null || typeof v !== 'object' || Array.isArray(v)) return;
    const obj = v as Record<string, unknown>;
    const keys = Object.keys(obj);
    const find = (re: RegExp): string | undefined => keys.find((k) => re.test(k) && typeof obj[k] === 'number');
    const k50 = find(PCT.p50);
    const k95 = find(PCT.p95);
    const k99 = find(PCT.p99);
    if (k50 && k95 && k99) {
      const unit = /us$/i.test(k50) ? 'us' : /ns$/i.test(k50) ? 'ns' : 'ms';
      latencies.push({ metric: path || '(root)', p50: obj[k50] as number, p95: obj[k95] as number, p99: obj[k99] as number, unit });
    }
    for (const k of keys) {
      const child = obj[k];
      const p = path ? `${path}.${k}` : k;
      if (typeof child === 'number' && RESOURCE.test(k) && !(k === k50 || k === k95 || k === k99)) resources[p] = child;
      else walk(child, p, depth + 1);
    }
  };
  walk(raw, '', 0);
  return { latencies, resources };
}

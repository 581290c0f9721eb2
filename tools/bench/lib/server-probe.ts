// What the real server says about itself during a benchmark's measured window: its own merged
// latencies (event-loop delay of every thread, pub fan-out) from GET /stats/histograms read at
// both edges of the window, and, for the scrape target, a GET /metrics every second in between,
// as Prometheus would scrape it, to show whether rendering the exposition stalls a loop.
import { markServerHistograms, serverWindow, type ServerWindow } from '../../loadtest/server-window.js';

const SCRAPE_EVERY_MS = 1000;

export interface ServerProbeResult {
  window: ServerWindow;
  /** Present for the scrape target: how the scrapes went. */
  scrapes?: { count: number; failed: number; bytes: number; slowestMs: number };
}

export class ServerProbe {
  private start: ReturnType<typeof markServerHistograms> | null = null;
  private end: ReturnType<typeof markServerHistograms> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly scrapes = { count: 0, failed: 0, bytes: 0, slowestMs: 0 };

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly scrape: boolean,
  ) {}

  /**
   * 'warmup': one read, unmeasured: the server renders /stats/histograms only when asked, and
   * its first render (its code loaded, and the collections that brings) then falls in the
   * warm-up, not at the start of the window.
   */
  onWindow(edge: 'warmup' | 'start' | 'end'): void {
    if (edge === 'warmup') {
      void fetch(`http://${this.host}:${this.port}/stats/histograms`, { signal: AbortSignal.timeout(5000) }).then((res) => res.arrayBuffer(), () => null).catch(() => null);
    } else if (edge === 'start') {
      this.start = markServerHistograms({ host: this.host, port: this.port });
      if (this.scrape) this.timer = setInterval(() => void this.scrapeOnce(), SCRAPE_EVERY_MS);
    } else {
      if (this.timer) clearInterval(this.timer);
      this.timer = null;
      this.end = markServerHistograms({ host: this.host, port: this.port });
    }
  }

  async result(): Promise<ServerProbeResult> {
    if (this.timer) clearInterval(this.timer);
    const start = (await this.start) ?? 'the window never started';
    const end = (await this.end) ?? 'the window never ended';
    return { window: serverWindow(start, end), ...(this.scrape ? { scrapes: this.scrapes } : {}) };
  }

  private async scrapeOnce(): Promise<void> {
    const t0 = performance.now();
    try {
      const res = await fetch(`http://${this.host}:${this.port}/metrics`, { signal: AbortSignal.timeout(5000) });
      const body = await res.arrayBuffer();
      if (!res.ok) throw new Error(String(res.status));
      this.scrapes.count++;
      this.scrapes.bytes = body.byteLength;
    } catch {
      this.scrapes.failed++;
    }
    this.scrapes.slowestMs = Math.max(this.scrapes.slowestMs, Math.round((performance.now() - t0) * 1000) / 1000);
  }
}

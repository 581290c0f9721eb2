/**
 * The connection's token: a fixed string, or a callback asked for a fresh one when the
 * client connects after a 4001 and shortly before the current one expires (the server closes
 * with 4001 at `exp`; a fresh `auth` frame first keeps the connection).
 */
import { MAX_TIMER_MS } from './timers.js';

export type TokenSource = () => string | Promise<string>;

/** How long before `expiresAt` a fresh token is sent: a tenth of what is left, within 1 s .. 60 s. */
export function refreshLead(msLeft: number): number {
  return Math.min(60_000, Math.max(1_000, msLeft / 10));
}

/** The least time between two refreshes planned from an expiry. */
const MIN_REFRESH_GAP_MS = 1_000;

export class TokenKeeper {
  private cached: string | undefined;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly source: string | TokenSource,
    /** Sends a fresh token on the open connection; resolves with its expiry, if it has one. */
    private readonly sendAuth: (token: string) => Promise<number | undefined>,
    private readonly report: (err: Error) => void,
  ) {}

  get canRefresh(): boolean {
    return typeof this.source === 'function';
  }

  /** The token to connect with; `fresh` asks the callback again (after a 4001). */
  async get(fresh: boolean): Promise<string> {
    if (typeof this.source === 'string') return this.source;
    if (fresh || this.cached === undefined) {
      // A token asked for fresh was refused: it is not to be offered again should the callback fail now.
      if (fresh) this.cached = undefined;
      const token = await this.source();
      if (typeof token !== 'string' || token.length === 0) throw new TypeError('the token callback must return a non-empty string');
      this.cached = token;
    }
    return this.cached;
  }

  /**
   * The open connection's token expires at `at` (epoch ms, the server's clock). A refresh is
   * at least MIN_REFRESH_GAP_MS away, so that an expiry in the past (a hostile server, a skewed
   * clock) cannot make the callback run in a loop; one beyond what a timer can wait (tokens of
   * more than 24.8 days) is reached in steps, as a longer delay would fire at once.
   */
  expiresAt(at: number): void {
    this.stop();
    if (!this.canRefresh || !Number.isFinite(at)) return;
    const left = at - Date.now();
    const wait = Math.max(MIN_REFRESH_GAP_MS, left - refreshLead(left));
    this.timer = wait > MAX_TIMER_MS ? setTimeout(() => this.expiresAt(at), MAX_TIMER_MS) : setTimeout(() => void this.refresh(), wait);
    (this.timer as { unref?: () => void }).unref?.();
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private async refresh(): Promise<void> {
    this.timer = null;
    try {
      const next = await this.sendAuth(await this.get(true));
      if (next !== undefined) this.expiresAt(next);
    } catch (err) {
      // The server closes with 4001 at expiry; the reconnect asks for a fresh token again.
      this.report(err instanceof Error ? err : new Error(String(err)));
    }
  }
}

/**
 * The token callback's answer, or a failure after `ms`: one that never answers must not hold the
 * reconnection for ever. On the client's timers (as 'token'), so that close() clears it: else it
 * kept a Node process up that long, then told an `error` after `closed`.
 */
export function tokenWithin(answer: Promise<string>, ms: number, timers: { set(name: 'token', ms: number, run: () => void): void; clear(name: 'token'): void }): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    timers.set('token', ms, () => reject(new Error('the token callback did not answer within connectTimeoutMs')));
    const settle = (): void => timers.clear('token');
    answer.then((token) => (settle(), resolve(token)), (err: unknown) => (settle(), reject(err)));
  });
}

/**
 * Requests waiting for the server's answer, by `ref`, and the ones waiting for a connection.
 * Every request has a deadline (one sweep timer for all of them, not a timer each) and
 * settles exactly once: by its answer, by `err`, by the deadline, or when the connection it
 * was sent on closes.
 */
import { ClientErrorCodes, OcsError, type ClientErrorCode } from '../protocol/errors.js';

export interface Pending {
  resolve(value: unknown): void;
  reject(err: OcsError): void;
  /** performance.now() ms: a step of the wall clock times out nothing. */
  deadline: number;
}

export class Requests {
  private readonly inFlight = new Map<string, Pending>();
  private readonly waiting: Array<{ frame: Record<string, unknown>; pending: Pending }> = [];
  private counter = 0;
  private sweeper: ReturnType<typeof setInterval> | null = null;

  /** `timedOut`: told of each request that timed out (its frame may still wait to be sent). */
  constructor(
    readonly timeoutMs: number,
    private readonly maxQueued: number,
    private readonly timedOut: (ref: string) => void = () => {},
  ) {}

  /** A new ref, unique for this client. */
  nextRef(): string {
    this.counter = (this.counter + 1) % Number.MAX_SAFE_INTEGER;
    return this.counter.toString(36);
  }

  /** A promise for the answer to `ref` (the frame carrying it is sent by the caller). */
  expect<T>(ref: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.inFlight.set(ref, { resolve: resolve as (value: unknown) => void, reject, deadline: performance.now() + this.timeoutMs });
      this.startSweeper();
    });
  }

  /** Keeps `frame` (with its ref) until a connection takes it; refused over `maxQueued`. */
  queue<T>(frame: Record<string, unknown> & { ref: string }): Promise<T> {
    if (this.waiting.length >= this.maxQueued) return Promise.reject(new OcsError('E_BACKLOG_FULL'));
    return new Promise<T>((resolve, reject) => {
      // The deadline starts when the frame is sent: a queued request waits for a connection as long as it takes.
      this.waiting.push({ frame, pending: { resolve: resolve as (value: unknown) => void, reject, deadline: Infinity } });
    });
  }

  /** Takes the queued frames for sending; each is in flight from now on. */
  drainQueue(send: (frame: Record<string, unknown>) => void): void {
    const now = performance.now();
    for (const { frame, pending } of this.waiting.splice(0)) {
      pending.deadline = now + this.timeoutMs;
      this.inFlight.set(frame.ref as string, pending);
      this.sending(frame, send);
    }
    if (this.inFlight.size > 0) this.startSweeper();
  }

  /**
   * Sends the frame of a request in flight; one its encoding refuses (data the codec cannot
   * write: a BigInt, a cycle) fails that request with E_BAD_FRAME rather than throwing out of
   * a socket's event handler, or being left to time out.
   */
  sending(frame: Record<string, unknown>, send: (frame: Record<string, unknown>) => void): void {
    try {
      send(frame);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      this.reject(frame.ref as string, new OcsError('E_BAD_FRAME', `the ${String(frame.op)} frame cannot be encoded: ${why}`, { cause: err }));
    }
  }

  resolve(ref: string, value: unknown): boolean {
    const pending = this.inFlight.get(ref);
    if (pending === undefined) return false;
    this.inFlight.delete(ref);
    pending.resolve(value);
    return true;
  }

  reject(ref: string, err: OcsError): boolean {
    const pending = this.inFlight.get(ref);
    if (pending === undefined) return false;
    this.inFlight.delete(ref);
    pending.reject(err);
    return true;
  }

  has(ref: string): boolean {
    return this.inFlight.has(ref);
  }

  /** The connection closed: what was sent on it has an unknown outcome. */
  failInFlight(code: ClientErrorCode): void {
    const failed = [...this.inFlight.values()];
    this.inFlight.clear();
    for (const pending of failed) pending.reject(new OcsError(code, ClientErrorCodes[code].message));
  }

  /** The client closed: nothing will be sent any more. */
  failAll(code: ClientErrorCode): void {
    this.failInFlight(code);
    for (const { pending } of this.waiting.splice(0)) pending.reject(new OcsError(code, ClientErrorCodes[code].message));
    this.stopSweeper();
  }

  private startSweeper(): void {
    if (this.sweeper !== null) return;
    this.sweeper = setInterval(() => this.sweep(), Math.max(10, Math.min(1000, this.timeoutMs / 4)));
    // Node: a pending request alone does not keep the process alive (browsers have no unref).
    (this.sweeper as { unref?: () => void }).unref?.();
  }

  private stopSweeper(): void {
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sweeper = null;
  }

  private sweep(): void {
    const now = performance.now();
    for (const [ref, pending] of this.inFlight) {
      if (pending.deadline <= now) {
        this.inFlight.delete(ref);
        this.timedOut(ref);
        pending.reject(new OcsError('E_TIMEOUT'));
      }
    }
    if (this.inFlight.size === 0) this.stopSweeper();
  }
}

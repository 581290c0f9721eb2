/**
 * When to reconnect after a connection closed, decided from its close code alone (a pure
 * function, so the policy is tested without sockets):
 *
 * - 1012 (restart), 1013 (overloaded), 1001 (going away): retry soon, with jitter, so that a
 *   restarted server's clients do not all come back in the same millisecond;
 * - 4001 (unauthorized): get a fresh token first, then retry;
 * - 4400 (bad frames), 4029 (rate limited): this client misbehaved: back off longer;
 * - 1008 (policy violation) and 4403 (forbidden): retrying cannot help: stop;
 * - anything else (1006 a dropped connection, 1011, 4408 idle, 1009): exponential backoff.
 *
 * Delays grow by `factor` per attempt in a row, up to `maxMs`, with "equal jitter" (half the
 * delay fixed, half random) so a retry neither comes at once nor waits for nothing.
 */
import { CloseCodes, ErrorCodes } from '../protocol/errors.js';

/** Never sent by this server, but by proxies and other ocs.v1 servers: a refusal for good. */
export const POLICY_VIOLATION = 1008;
export const FORBIDDEN = 4403;

export interface ReconnectOptions {
  /** First delay of the ordinary backoff (ms). */
  initialMs: number;
  /** Longest delay (ms). */
  maxMs: number;
  factor: number;
  /** First delay after 1001/1012/1013: the server asked to come back (ms). */
  soonMs: number;
  /** Least delay after 4400/4029: this client was refused for its own traffic (ms). */
  penaltyMs: number;
  /** A connection that stays up this long resets the attempt count (ms). */
  stableMs: number;
  /** Give up after this many attempts in a row (Infinity: never). */
  maxAttempts: number;
}

export const DEFAULT_RECONNECT: Readonly<ReconnectOptions> = Object.freeze({
  initialMs: 500,
  maxMs: 30_000,
  factor: 2,
  soonMs: 250,
  penaltyMs: 10_000,
  stableMs: 5_000,
  maxAttempts: Infinity,
});

export type ReconnectDecision =
  | { action: 'retry'; delayMs: number; refreshToken: boolean }
  | { action: 'stop'; reason: string };

/**
 * `attempt` counts the retries in a row before this one (0 for the first after a stable
 * connection); `random` returns [0, 1).
 */
export function decideReconnect(code: number, attempt: number, options: ReconnectOptions = DEFAULT_RECONNECT, random: () => number = Math.random): ReconnectDecision {
  if (code === POLICY_VIOLATION || code === FORBIDDEN) return { action: 'stop', reason: `refused for good (close ${code})` };
  if (attempt >= options.maxAttempts) return { action: 'stop', reason: `gave up after ${attempt} attempts` };
  const grown = (base: number): number => Math.min(options.maxMs, base * options.factor ** Math.min(attempt, 32));
  // A delay of Infinity stays one: times a draw of 0 it is NaN, which a timer takes as at once.
  const full = (delay: number): number => (delay === Infinity ? delay : Math.round(random() * delay));
  const jittered = (delay: number): number => (delay === Infinity ? delay : Math.round(delay / 2 + (random() * delay) / 2));
  switch (code) {
    case CloseCodes.GOING_AWAY:
    case CloseCodes.SERVICE_RESTART:
    case ErrorCodes.E_OVERLOADED.close:
      // Full jitter on the first retry: spread a whole server's clients over soonMs.
      return { action: 'retry', delayMs: attempt === 0 ? full(options.soonMs) : jittered(grown(options.soonMs)), refreshToken: false };
    case ErrorCodes.E_UNAUTHORIZED.close:
      return { action: 'retry', delayMs: attempt === 0 ? 0 : jittered(grown(options.initialMs)), refreshToken: true };
    case ErrorCodes.E_BAD_FRAME.close:
    case ErrorCodes.E_RATE_LIMITED.close:
      // At least penaltyMs, spread above it (up to half as much again, then as it grows), so that
      // clients refused in one burst do not all come back in the same instant.
      return { action: 'retry', delayMs: options.penaltyMs + jittered(grown(options.penaltyMs) / 2), refreshToken: false };
    default:
      return { action: 'retry', delayMs: jittered(grown(options.initialMs)), refreshToken: false };
  }
}

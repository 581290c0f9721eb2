/**
 * The bytes of answers (replays of joins with `since`, `history` pages, `presence` answers) one
 * connection may be given, on one process (group-requests.ts) and on a node of a cluster
 * (cluster/groups.ts, cluster/history.ts): a 40-byte `history` frame, or a member's `join` with
 * `since`, is answered with up to max_replay_bytes, so frames at the frame rate alone took the
 * server's bandwidth from everyone else. Past it the frame is refused E_RATE_LIMITED and its
 * answer is not built (nor, in cluster mode, read from Redis).
 */
import type { Config } from '../config/schema.js';
import { ResendBudget } from './resend-budget.js';

/**
 * Answers of maxReplayBytes one connection may be given at once, and again each second: at the
 * frame rate alone four connections took 92-102 MB/s of answers and another user's send went
 * from 3 to 36-38 ms at P50 (a review, 2026-12-08). Counted in bytes, so that small answers
 * cost little.
 */
export const ANSWERS_PER_SECOND = 4;

/** What an answer asked of Redis holds of its connection's budget until it comes: a sixteenth (reserve). */
export const RESERVED_SHARE = 16;

/** Most bytes a join replays, or a `history` answer carries: history.max_replay_bytes, capped so that a replay cannot make its client a slow consumer (1013). */
export function replayBytesOf(config: Config): number {
  return Math.min(config.history.max_replay_bytes, Math.floor(config.websocket.server.max_backpressure / 2));
}

export class AnswerBudget {
  readonly capacity: number;
  /** Bytes each connection may still be given, by sid (connections are a node's own: no other node answers them). */
  private readonly bytes: ResendBudget;

  constructor(maxReplayBytes: number) {
    this.capacity = ANSWERS_PER_SECOND * maxReplayBytes;
    this.bytes = new ResendBudget(this.capacity, 1000);
  }

  /**
   * Takes the first byte of an answer for connection `sid`: true when none is left, and then
   * nothing is built (a flood's refusals cost no page, replay or list). For answers built at
   * once (one process); then mayAnswer.
   */
  spent(sid: string): boolean {
    return !this.bytes.take(sid, 1, Date.now());
  }

  /** Whether connection `sid`, which spent() let ask, may be given an answer of `bytes` now (then they are spent). */
  mayAnswer(sid: string, bytes: number): boolean {
    return this.bytes.take(sid, Math.min(bytes, this.capacity) - 1, Date.now());
  }

  /**
   * Holds part of the budget for an answer asked of Redis (cluster mode), whose size is known
   * only once it comes: false when that part is not left. Held before Redis is asked, so that
   * pipelined frames cannot all pass while the first answers are on their way; `settle` then
   * charges what the answer took. At most a sixteenth of the budget, so that a client may have
   * 16 small answers on their way at once, as it may on one process (taking the most an answer
   * may be, 256 KiB for a page, let a connection have four pages on their way and refused the
   * fifth, however small each).
   */
  reserve(sid: string, most: number): boolean {
    return this.bytes.take(sid, this.held(most), Date.now());
  }

  /**
   * The answer reserved for was `bytes` (0: none went): what it did not use is given back, what it
   * took beyond is charged, into debt (at most 16 answers' worth), so that a flood of large
   * answers costs its connection as long as those bytes take to come back.
   */
  settle(sid: string, most: number, bytes: number): void {
    const over = this.held(most) - Math.min(bytes, this.capacity);
    if (over > 0) this.bytes.refund(sid, over, Date.now());
    else this.bytes.spend(sid, -over, Date.now(), -Infinity);
  }

  private held(most: number): number {
    return Math.min(most, this.capacity / RESERVED_SHARE);
  }

  refusal(): string {
    return `the answers to this connection's presence, history and join-with-since frames passed ${this.capacity} bytes a second; retry in a second`;
  }
}

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
   * Takes `most`, the largest the answer may be, before it is asked of Redis (cluster mode): false
   * when that much is not left. Taken whole, so that pipelined frames cannot all pass while the
   * first answers are on their way; `settle` then gives back what the answer did not use.
   */
  reserve(sid: string, most: number): boolean {
    return this.bytes.take(sid, Math.min(most, this.capacity), Date.now());
  }

  /** The answer reserved `most` for was `bytes` (0: none went). */
  settle(sid: string, most: number, bytes: number): void {
    const over = Math.min(most, this.capacity) - Math.min(bytes, this.capacity);
    if (over > 0) this.bytes.refund(sid, over, Date.now());
    else this.bytes.spend(sid, -over, Date.now());
  }

  refusal(): string {
    return `the answers to this connection's presence, history and join-with-since frames passed ${this.capacity} bytes a second; retry in a second`;
  }
}

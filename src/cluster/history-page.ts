/**
 * The `history` op in cluster mode: one page of a history group's kept messages, read from Redis
 * (HISTORY_PAGE). Apart from history.ts, which keeps each node's members in the group's sequence
 * (joins, resumes): a page is answered directly, in no order with the group's messages.
 */
import type { AnswerBudget } from '../broker/answer-budget.js';
import type { ShardLink } from '../broker/shard-link.js';
import type { ErrorCode } from '../protocol/errors.js';
import { encodeHistoryPage } from '../protocol/json-group-frames.js';
import type { HistoryRule } from '../shared/history-patterns.js';
import { HISTORY_PAGE } from './history-scripts.js';

export const HISTORY_UNAVAILABLE = 'group history is kept in Redis, which is unreachable';

export interface PageParts {
  link: ShardLink;
  answers: AnswerBudget;
  up(): boolean;
  /** Runs a history script with the prelude's ARGV (history.ts). */
  run(source: string, rule: HistoryRule, group: string, args: Array<string | number>): Promise<unknown>;
  maxReplayBytes: number;
  maxPage: number;
  /** The largest message a pub makes (about). */
  maxEntry: number;
}

/** One page, read from Redis once the connection's answer budget holds a page of the most bytes. */
export function answerPage(parts: PageParts, rule: HistoryRule, shard: number, sid: string, group: string, ref: string | null, since: number, limit: number): void {
  const { link, answers, maxReplayBytes, maxPage } = parts;
  const fail = (code: ErrorCode, message: string): void => link.error(shard, sid, code, message, ref);
  if (!parts.up()) return fail('E_CLUSTER_UNAVAILABLE', HISTORY_UNAVAILABLE);
  const maxBytes = Math.min(maxReplayBytes, link.maxFrameBytes - 256);
  if (!answers.reserve(sid, maxBytes)) return fail('E_RATE_LIMITED', answers.refusal());
  const count = Math.min(limit > 0 ? limit : maxPage, maxPage);
  parts.run(HISTORY_PAGE, rule, group, [since, count, maxBytes, parts.maxEntry]).then(
    (answer) => {
      const [top, epoch, more, ...frames] = answer as [number, string, number, ...string[]];
      if (since > top) {
        answers.settle(sid, maxBytes, 0);
        return fail('E_BAD_FRAME', `since ${since} is past the group's last offset ${top} (epoch ${epoch})`);
      }
      const page = encodeHistoryPage(group, ref ?? undefined, frames, top, epoch, more === 1);
      answers.settle(sid, maxBytes, page.length);
      link.reply(shard, sid, page);
    },
    () => {
      answers.settle(sid, maxBytes, 0);
      fail('E_CLUSTER_UNAVAILABLE', HISTORY_UNAVAILABLE);
    },
  );
}

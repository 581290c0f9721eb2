/**
 * The broker's answers about groups: joins and leaves of groups that keep history, the
 * `presence` op and the `history` op (records GROUP_JOIN, GROUP_LEAVE, PRESENCE_QUERY, HISTORY).
 *
 * Why a history group's join comes here: this is where its messages get their offsets, one at
 * a time, and what the broker writes to a shard arrives there in the order written. The
 * answer to a join (the replay of what the client missed, then JOINED with the group's top
 * offset) is written between two of the group's messages: every message up to the top went to
 * the shard before it (the shard kept the connection unsubscribed from them: they are replayed),
 * every later one after it (the shard subscribed the connection on JOINED: it gets them live).
 * So a recovering client gets each message once, in order, whichever shard it was published on.
 */
import { batchFrames } from '../protocol/json-codec.js';
import { encodeHistoryPage } from '../protocol/json-group-frames.js';
import { ToBroker } from '../link/records.js';
import { AnswerBudget } from './answer-budget.js';
import type { GroupLog } from './group-log.js';
import type { GroupPresence } from './group-presence.js';
import type { History } from './history.js';
import type { ShardLink } from './shard-link.js';

export interface GroupRequestOptions {
  /** null: no group keeps history (shards then send no GROUP_JOIN, GROUP_LEAVE or HISTORY). */
  history: History | null;
  presence: GroupPresence;
  link: ShardLink;
  /** Most messages in one replayed `batch` frame (performance.batch_size). */
  batchSize: number;
  /** Most bytes a join replays, or a `history` answer carries (history.max_replay_bytes, capped by max_backpressure / 2). */
  maxReplayBytes: number;
  /** Most messages in a `history` answer (history.max_page). */
  maxPage: number;
}

/** Recovery was not asked (JOINED's recovered field). */
const NOT_ASKED = -1;

export class GroupRequests {
  /** Bytes of answers (replays, `history` pages, `presence` answers) each connection may still be given. */
  private readonly answers: AnswerBudget;

  constructor(private readonly options: GroupRequestOptions) {
    this.answers = new AnswerBudget(options.maxReplayBytes);
  }

  /** Handles `kind` if it is one of these records; false otherwise. */
  onRecord(shard: number, kind: number, f: unknown[]): boolean {
    switch (kind) {
      case ToBroker.GROUP_JOIN: {
        const [sid, group, ref, sinceOffset, sinceEpoch] = f as [string, string, string | null, number, string | null];
        this.join(shard, sid, group, ref, sinceOffset, sinceEpoch);
        return true;
      }
      case ToBroker.GROUP_LEAVE: {
        const [sid, group, ref] = f as [string, string, string | null];
        this.options.link.groupLeft(shard, sid, group, ref);
        return true;
      }
      case ToBroker.PRESENCE_QUERY: {
        const [sid, group, ref, counts] = f as [string, string, string | null, number];
        if (this.answers.spent(sid)) {
          this.refuse(shard, sid, ref);
          return true;
        }
        const answer = this.options.presence.answer(group, ref ?? undefined, counts === 1);
        if (this.answers.mayAnswer(sid, answer.length)) this.options.link.reply(shard, sid, answer);
        else this.refuse(shard, sid, ref);
        return true;
      }
      case ToBroker.HISTORY: {
        const [sid, group, ref, since, limit] = f as [string, string, string | null, number, number];
        this.page(shard, sid, group, ref, since, limit);
        return true;
      }
      default:
        return false;
    }
  }

  /**
   * A join of a history group: its top and epoch, with the replay of what came after `since`
   * when the client asked and all of it is still kept (recovered), else recovered: false.
   */
  private join(shard: number, sid: string, group: string, ref: string | null, sinceOffset: number, sinceEpoch: string | null): void {
    const { link } = this.options;
    const log = this.options.history?.open(group) ?? null;
    // Not a history group here (cannot happen while shards and broker share the config): a plain join.
    if (log === null) return link.groupJoined(shard, sid, group, ref, [], -1, '', NOT_ASKED);
    if (sinceOffset < 0) return link.groupJoined(shard, sid, group, ref, [], log.top, log.epoch, NOT_ASKED);
    if (sinceEpoch !== log.epoch) return link.groupJoined(shard, sid, group, ref, [], log.top, log.epoch, 0);
    if (sinceOffset > log.top) {
      return link.groupJoinFailed(shard, sid, group, ref, `since.offset ${sinceOffset} is past the group's last offset ${log.top} (epoch ${log.epoch})`);
    }
    // Messages after `since` no longer kept (size, ttl, max_bytes), or more than one replay carries: the client reloads.
    if (sinceOffset + 1 < log.first || log.moreBytesAfter(sinceOffset, this.options.maxReplayBytes)) {
      return link.groupJoined(shard, sid, group, ref, [], log.top, log.epoch, 0);
    }
    const replay = this.answers.spent(sid) ? null : this.replayFrames(log, sinceOffset);
    if (replay === null || !this.answers.mayAnswer(sid, replay.reduce((bytes, frame) => bytes + frame.length, 0))) {
      return link.groupJoinFailed(shard, sid, group, ref, this.answers.refusal(), 'E_RATE_LIMITED');
    }
    link.groupJoined(shard, sid, group, ref, replay, log.top, log.epoch, 1);
  }

  private refuse(shard: number, sid: string, ref: string | null): void {
    this.options.link.error(shard, sid, 'E_RATE_LIMITED', this.answers.refusal(), ref);
  }

  /** The messages after `since` as `msg` frames (one message) or `batch` frames, each fitting a ring record. */
  private replayFrames(log: GroupLog, since: number): string[] {
    return batchFrames(log.range(since, Infinity, Infinity).frames, this.options.batchSize, this.options.link.maxFrameBytes);
  }

  /** One page of `history`: the messages after `since`, at most `limit` and max_replay_bytes (and what one ring record carries). */
  private page(shard: number, sid: string, group: string, ref: string | null, since: number, limit: number): void {
    const { link, maxPage } = this.options;
    const log = this.options.history?.open(group) ?? null;
    if (log === null) return link.error(shard, sid, 'E_BAD_FRAME', `${group} keeps no history (websocket.history)`, ref);
    if (since > log.top) return link.error(shard, sid, 'E_BAD_FRAME', `since ${since} is past the group's last offset ${log.top} (epoch ${log.epoch})`, ref);
    const maxBytes = Math.min(this.options.maxReplayBytes, link.maxFrameBytes - 256);
    if (this.answers.spent(sid)) return this.refuse(shard, sid, ref);
    const { frames, more } = log.range(since, Math.min(limit > 0 ? limit : maxPage, maxPage), maxBytes);
    const answer = encodeHistoryPage(group, ref ?? undefined, frames, log.top, log.epoch, more);
    if (!this.answers.mayAnswer(sid, answer.length)) return this.refuse(shard, sid, ref);
    link.reply(shard, sid, answer);
  }
}


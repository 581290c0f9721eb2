/**
 * Groups beyond their members in cluster mode: group presence, history with offsets, and the
 * `presence` and `history` ops (docs/messaging.md, "Presence and history in cluster mode").
 *
 * - `presence` answers come from the cluster's presence in Redis (presence.ts): every member
 *   connection on every live node. A node writes a member there before its `joined`, so a
 *   connection always sees its own join. Without Redis the answer is E_CLUSTER_UNAVAILABLE.
 * - History is the cluster's, in Redis (history.ts): a history group's offsets and epoch are
 *   the same on every node, so recovery and `history` pages are exact on any node.
 * - Presence events (`join` with `presence: true`) are the cluster's: Redis decides which joins
 *   and leaves are news (a user's first or last member connection in the group on any node)
 *   and tells every node with members; each node coalesces them for its watchers
 *   (presence-events.ts).
 */
import type { AnswerBudget } from '../broker/answer-budget.js';
import { fittingPresenceAnswer } from '../broker/group-presence.js';
import type { RingShardLink } from '../broker/ring-link.js';
import type { Config } from '../config/schema.js';
import { presenceTopic, ToBroker } from '../link/records.js';
import type { Logger } from '../util/logger.js';
import type { ClusterHistory } from './history.js';
import type { ClusterPresence } from './presence.js';
import { PresenceEvents } from './presence-events.js';

export interface ClusterGroupsOptions {
  config: Config;
  link: RingShardLink;
  log: Logger;
  presence: ClusterPresence;
  history: ClusterHistory;
  /** What each connection may still be answered (history.ts spends it on pages and replays). */
  answers: AnswerBudget;
  /** Whether Redis is reachable now. */
  up(): boolean;
}

/** Recovery was not asked (JOINED's recovered field). */
const NOT_ASKED = -1;
/** A `presence` answer's bytes beside its users: the op, the group and ref (128 each at most), the totals. */
const PRESENCE_OVERHEAD = 512;
/** A listed user's bytes at most: a name (128), its quotes, colon, comma and connection count. */
const PRESENCE_USER_BYTES = 128 + 12;

export class ClusterGroups {
  readonly events: PresenceEvents;
  private readonly maxList: number;
  /** The largest a listed `presence` answer may be: taken from the connection's answer budget before Redis is asked. */
  private readonly listBytes: number;

  constructor(private readonly options: ClusterGroupsOptions) {
    const { config, link, log } = options;
    if (config.history.persist && config.websocket.history.length > 0) log.warn('history.persist applies to the LMDB store: in cluster mode group history is kept in Redis, as durable as its persistence settings make it');
    this.maxList = config.websocket.presence.max_list;
    this.listBytes = Math.min(link.maxFrameBytes, PRESENCE_OVERHEAD + this.maxList * PRESENCE_USER_BYTES);
    this.events = new PresenceEvents({
      maxList: this.maxList,
      windowMs: config.websocket.presence.window * 1000,
      maxFrameBytes: link.maxFrameBytes,
      emit: (group, frame) => link.groupPub(presenceTopic(group), frame),
    });
  }

  stop(): void {
    this.events.stop();
    this.options.history.stop();
  }

  /**
   * GROUP_JOIN, GROUP_LEAVE, PRESENCE_QUERY and HISTORY. A join's promise settles once it is
   * answered (a history group's answer comes from Redis), so that the connection's next op waits.
   */
  onRecord(shard: number, kind: number, f: unknown[]): Promise<void> | void {
    const { link, history } = this.options;
    switch (kind) {
      case ToBroker.GROUP_JOIN: {
        const [sid, group, ref, sinceOffset, sinceEpoch] = f as [string, string, string | null, number, string | null];
        const rule = history.ruleOf(group);
        if (rule === null) return link.groupJoined(shard, sid, group, ref, [], -1, '', NOT_ASKED);
        return history.join(rule, shard, sid, group, ref, sinceOffset, sinceEpoch);
      }
      case ToBroker.GROUP_LEAVE: {
        const [sid, group, ref] = f as [string, string, string | null];
        return link.groupLeft(shard, sid, group, ref);
      }
      case ToBroker.HISTORY: {
        const [sid, group, ref, since, limit] = f as [string, string, string | null, number, number];
        const rule = history.ruleOf(group);
        if (rule === null) return link.error(shard, sid, 'E_BAD_FRAME', `${group} keeps no history (websocket.history)`, ref);
        return history.page(rule, shard, sid, group, ref, since, limit);
      }
      case ToBroker.PRESENCE_QUERY: {
        const [sid, group, ref, counts] = f as [string, string, string | null, number];
        return this.presenceAnswer(shard, sid, group, ref, counts === 1);
      }
    }
  }

  private presenceAnswer(shard: number, sid: string, group: string, ref: string | null, counts: boolean): void {
    const { link, presence, answers } = this.options;
    const unavailable = (): void => link.error(shard, sid, 'E_CLUSTER_UNAVAILABLE', 'presence across the nodes is kept in Redis, which is unreachable', ref);
    if (!this.options.up()) return unavailable();
    const most = counts ? PRESENCE_OVERHEAD : this.listBytes;
    if (!answers.reserve(sid, most)) return link.error(shard, sid, 'E_RATE_LIMITED', answers.refusal(), ref);
    presence.answer(group, this.maxList, counts).then(
      ({ users, userCount, conns }) => {
        const answer = fittingPresenceAnswer(group, ref ?? undefined, users, userCount, conns, link.maxFrameBytes);
        answers.settle(sid, most, answer.length);
        link.reply(shard, sid, answer);
      },
      () => {
        answers.settle(sid, most, 0);
        unavailable();
      },
    );
  }
}

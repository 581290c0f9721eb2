/**
 * Group history in cluster mode, kept in Redis (history-scripts.ts has the keys), so that a
 * history group's offsets and epoch are the cluster's: `history` pages and recovery on `join`
 * are exact on any node, whichever node the client was on before.
 *
 * How the single-process guarantee carries over (src/broker/group-requests.ts): there the
 * broker writes a join's answer (the replay, then JOINED with the top offset) to the shard
 * between two of the group's messages. Here a pub to a history group is not delivered by its
 * node directly: the APPEND script gives it its offset and PUBLISHes it on the group's channel,
 * so every node with members (the publisher's too) receives the group's messages in offset
 * order, on its one subscriber connection. The JOIN script PUBLISHes its answer on the joining
 * node's channel, which that connection also receives: Redis hands it over after every message
 * up to its `top` and before every later one, and the node forwards both, as they come, over
 * the same ring to the shard. The node subscribed the group's channel before it asked (the
 * member's MEMBERSHIP comes first), so no message after `top` can pass it by.
 *
 * Without Redis a node can neither number a history group's messages nor answer its joins:
 * pubs, joins and `history` of such groups get E_CLUSTER_UNAVAILABLE meanwhile. Nor does it hear
 * what other nodes publish; so it keeps, per history group it has members of, the last offset
 * it forwarded, and when Redis is back (channels subscribed again, before it takes joins and
 * pubs) it asks Redis for what came after, as a join with `since` would (resume): the answer
 * comes in the group's sequence, the messages up to its top meanwhile are not forwarded (the
 * answer has them), and the members get what they missed, in order, before what comes next.
 */
import { replayBytesOf, type AnswerBudget } from '../broker/answer-budget.js';
import type { ShardLink } from '../broker/shard-link.js';
import type { Config } from '../config/schema.js';
import { batchFrames } from '../protocol/json-codec.js';
import { encodeHistoryMsgHead } from '../protocol/json-group-frames.js';
import { HistoryPatterns, type HistoryRule } from '../shared/history-patterns.js';
import { newEpoch } from '../store/history-store.js';
import type { Logger } from '../util/logger.js';
import { AnswerTurns } from './answer-turns.js';
import { HISTORY_APPEND, HISTORY_JOIN, HISTORY_PAGE, positionOf, ttlMs, type Position } from './history-scripts.js';
import type { Reply } from './intake.js';
import { answerPage, HISTORY_UNAVAILABLE, type PageParts } from './history-page.js';
import type { Keys } from './keys.js';
import { ResumeRetries } from './resume-retries.js';
import type { ScriptRunner } from './script-runner.js';
import { timedOut } from './redis.js';
import type { ClusterStats } from './stats.js';

export interface ClusterHistoryOptions {
  config: Config;
  scripts: ScriptRunner;
  keys: Keys;
  node: string;
  link: ShardLink;
  log: Logger;
  stats: ClusterStats;
  /** What each connection may still be answered (cluster/groups.ts spends it on `presence` answers). */
  answers: AnswerBudget;
  up(): boolean;
  /** Whether `group` has member connections on this node. */
  hasMembers(group: string): boolean;
  /** The Redis server's run_id, read again after each outage (RedisLink.runId). */
  runId(): Promise<string>;
}

/** A join waiting for its answer on the node's channel. */
interface PendingJoin {
  kind: 'join';
  shard: number;
  sid: string;
  group: string;
  ref: string | null;
  /** Bytes of the connection's answer budget taken for the replay (0: no `since`, none). */
  reserved: number;
  /** Set once the script is sent (an ask may wait its turn first). */
  timer?: NodeJS.Timeout;
  done(): void;
}

/** A resume waiting for its answer: the node's members of `group` get what they missed. */
interface PendingResume {
  kind: 'resume';
  group: string;
  timer?: NodeJS.Timeout;
  done(): void;
}

const NOT_NUMBERED = 'a group that keeps history is numbered in Redis, which is unreachable';
const MAYBE_PUBLISHED = 'Redis did not answer within cluster.command_timeout: the message may or may not have been published (a retry may deliver it twice)';
/** Pubs to history groups sent to Redis and not yet answered: past it they are refused (E_OVERLOADED), not queued without bound. */
const MAX_APPENDS_IN_FLIGHT = 50_000;

export class ClusterHistory {
  private readonly patterns: HistoryPatterns;
  private readonly pending = new Map<string, PendingJoin | PendingResume>();
  /** Per history group with members here, the last message forwarded to them (or the top their first join was answered at). */
  private readonly positions = new Map<string, Position>();
  /**
   * Groups waiting for their resume (null: Redis is still away; else the resume's token): what
   * comes live meanwhile is in its answer. The subscriber connection may be back (and its
   * channels with it) before the node is up, so the messages after a gap must wait too.
   */
  private readonly resuming = new Map<string, string | null>();
  /** Resumes refused while Redis stayed, asked again (null in `resuming` while they wait). */
  private readonly retries: ResumeRetries;
  private nextToken = 0;
  /**
   * What the scripts are told the server's run_id is: they trust it (one INFO saved per script),
   * so it is the one read on the commands connection since its last reconnect, '' until then
   * (the scripts ask INFO themselves). `outages` tells a read from before the last one.
   */
  private serverId = '';
  private outages = 0;
  /** The JOIN scripts sent at once (answer-turns.ts). */
  private readonly turns: AnswerTurns;
  private appendsInFlight = 0;
  private readonly nodeChannel: string;
  private readonly batchSize: number;
  private readonly maxReplayBytes: number;
  private readonly pageParts: PageParts;
  /** The largest message a pub makes (about): the scripts read as many as their byte budget holds of those at a time. */
  private readonly maxEntry: number;
  /** A join's answer that has not come by then never will (Redis went away meanwhile). */
  private readonly answerTimeoutMs: number;

  constructor(private readonly options: ClusterHistoryOptions) {
    const { config, keys, node } = options;
    this.patterns = new HistoryPatterns(config.websocket.history);
    this.nodeChannel = keys.nodeChannel(node);
    this.batchSize = config.websocket.performance.batch_size;
    this.maxReplayBytes = replayBytesOf(config);
    this.maxEntry = config.websocket.server.max_payload;
    this.turns = new AnswerTurns(this.maxReplayBytes);
    this.answerTimeoutMs = config.cluster.command_timeout * 2000;
    const { link, answers } = options;
    this.pageParts = { link, answers, up: () => options.up(), run: (...args) => this.run(...args), maxReplayBytes: this.maxReplayBytes, maxPage: config.history.max_page, maxEntry: this.maxEntry };
    this.retries = new ResumeRetries(config.cluster.command_timeout * 1000, (group) => this.retry(group));
  }

  /** Into Redis's script cache, and the server's run_id read, before this node takes pubs (after connecting, and after each outage). */
  async prepare(): Promise<void> {
    if (!this.patterns.any) return;
    const outages = this.outages;
    const [, id] = await Promise.all([this.options.scripts.load([HISTORY_APPEND, HISTORY_JOIN, HISTORY_PAGE]), this.options.runId()]);
    if (outages === this.outages) this.serverId = id;
  }

  /** The rule of `group` when it keeps history, else null (a plain group). */
  ruleOf(group: string): HistoryRule | null {
    return this.patterns.any ? this.patterns.ruleOf(group) : null;
  }

  /**
   * A pub to a history group: numbered and kept in Redis, and published from there to every
   * node with members (this one too); its publisher's ack carries the offset. Without Redis
   * nobody can number it: refused, and not delivered here either (it would be a hole).
   */
  publish(rule: HistoryRule, id: string, from: string, group: string, dataJson: string, pri: number, ts: number, reply: Reply): void {
    const { stats } = this.options;
    if (!this.options.up()) {
      stats.cluster_unavailable++;
      return reply.fail('E_CLUSTER_UNAVAILABLE', NOT_NUMBERED);
    }
    if (this.appendsInFlight >= MAX_APPENDS_IN_FLIGHT) return reply.fail('E_OVERLOADED', 'Redis is behind; retry shortly');
    this.appendsInFlight++;
    const head = encodeHistoryMsgHead(id, from, group, dataJson, pri, ts);
    this.run(HISTORY_APPEND, rule, group, [head, ts]).then(
      (answer) => {
        this.appendsInFlight--;
        stats.cluster_pubs_out++;
        reply.ok(id, (answer as [number, string])[0]);
      },
      (err: unknown) => {
        this.appendsInFlight--;
        stats.cluster_unavailable++;
        reply.fail('E_CLUSTER_UNAVAILABLE', timedOut(err) ? MAYBE_PUBLISHED : NOT_NUMBERED);
      },
    );
  }

  /**
   * A join (GROUP_JOIN) of a history group: its answer is written to the shard when the JOIN
   * script's record comes back on the node's channel (joinAnswered). Resolves once written, or
   * refused (E_CLUSTER_UNAVAILABLE; E_RATE_LIMITED past the connection's answer budget, before
   * Redis is asked), so that the connection's next op is answered after it.
   */
  join(rule: HistoryRule, shard: number, sid: string, group: string, ref: string | null, sinceOffset: number, sinceEpoch: string | null): Promise<void> {
    const { link, answers } = this.options;
    if (!this.options.up()) {
      link.groupJoinFailed(shard, sid, group, ref, HISTORY_UNAVAILABLE, 'E_CLUSTER_UNAVAILABLE');
      return Promise.resolve();
    }
    // Only a join with `since` replays (as on one process).
    const reserved = sinceOffset >= 0 ? this.maxReplayBytes : 0;
    if (reserved > 0 && !answers.reserve(sid, reserved)) {
      link.groupJoinFailed(shard, sid, group, ref, answers.refusal(), 'E_RATE_LIMITED');
      return Promise.resolve();
    }
    // A resume of the group waiting to be asked again goes first: its answer must come before this one's.
    this.retries.now(group);
    return new Promise<void>((done) => {
      this.ask(rule, group, sinceOffset, sinceEpoch ?? '', false, { kind: 'join', shard, sid, group, ref, reserved, done });
    });
  }

  /**
   * A record of the JOIN script on the node's channel: [token, top, epoch, recovered, frames,
   * error]. Written to the shard at once: the group's messages before it are the replay's.
   */
  joinAnswered(fields: readonly unknown[]): boolean {
    const [token, top, epoch, recovered, frames, error] = fields;
    if (typeof token !== 'string' || typeof top !== 'number' || typeof epoch !== 'string' || typeof recovered !== 'number' || !Array.isArray(frames) || typeof error !== 'string') return false;
    if (!frames.every((frame) => typeof frame === 'string')) return false;
    const asked = this.settle(token);
    if (asked === undefined) return true; // refused meanwhile (timed out)
    if (asked.kind === 'resume') this.resumed(asked.group, top, epoch, recovered === 1 ? (frames as string[]) : null);
    else {
      const { link, answers } = this.options;
      if (error !== '') {
        answers.settle(asked.sid, asked.reserved, 0);
        link.groupJoinFailed(asked.shard, asked.sid, asked.group, asked.ref, error);
      } else {
        const replay = batchFrames(frames as string[], this.batchSize, link.maxFrameBytes);
        answers.settle(asked.sid, asked.reserved, replay.reduce((bytes, frame) => bytes + frame.length, 0));
        link.groupJoined(asked.shard, asked.sid, asked.group, asked.ref, replay, top, epoch, recovered);
        // Asked before this join, the group's resume would have been answered before it: it will not be.
        if (this.resuming.has(asked.group)) this.abandon(asked.group);
        this.reached(asked.group, epoch, top);
      }
    }
    asked.done();
    return true;
  }

  /**
   * A message of a history group with members here, from Redis: whether to forward it (not
   * while the group waits for its resume: the answer carries it).
   */
  received(group: string, frame: string): boolean {
    if (this.resuming.has(group)) return false;
    const position = positionOf(frame);
    // Not for a group whose last member here left while the message was on its way: kept, it would never be removed.
    if (position !== null && this.options.hasMembers(group)) this.positions.set(group, position);
    return true;
  }

  /** The node stops: no resume is asked again (its connections are closing). */
  stop(): void {
    this.retries.clear();
  }

  /** The last member of `group` here left: nothing to resume for it. */
  left(group: string): void {
    this.positions.delete(group);
    this.resuming.delete(group); // a later first member starts from its own join
    this.retries.forget(group);
  }

  /**
   * Redis is back (the group channels are subscribed again, and the node takes no join or pub
   * yet): every history group with members here gets what was published after the last
   * message it forwarded. Resolves once every answer is written, or refused.
   */
  resume(): Promise<void> {
    const { stats, log } = this.options;
    const [resumedBefore, gapsBefore] = [stats.cluster_history_resumed, stats.cluster_history_gaps];
    const groups = [...this.positions.keys()].filter((group) => typeof this.resuming.get(group) !== 'string');
    const asked = groups.map((group) => new Promise<void>((done) => this.askResume(group, done)));
    return Promise.all(asked).then(() => {
      if (asked.length === 0) return;
      const [messages, gaps] = [stats.cluster_history_resumed - resumedBefore, stats.cluster_history_gaps - gapsBefore];
      const retrying = groups.filter((group) => this.resuming.get(group) === null).length;
      log.info({ groups: asked.length, messages, gaps, retrying }, 'cluster: history groups resumed after the outage');
    });
  }

  /** Asks for what `group`'s members missed since the node's position in it (resume). */
  private askResume(group: string, done: () => void): void {
    const position = this.positions.get(group);
    const rule = this.ruleOf(group);
    if (position === undefined || rule === null) return done();
    this.resuming.set(group, this.ask(rule, group, position.offset, position.epoch, true, { kind: 'resume', group, done }));
  }

  /** A refused resume's next try, unless its members left or Redis went meanwhile (then the next resume asks). */
  private retry(group: string): void {
    if (this.resuming.get(group) === null) this.askResume(group, () => {});
  }

  /**
   * A join of `group` was answered (its joiner now gets the live messages after its top) while
   * the group's resume is still awaited: that resume would give the joiner messages twice, so
   * it is given up, and the members before it see the gap at their next message (counted).
   */
  private abandon(group: string): void {
    const token = this.resuming.get(group);
    this.resuming.delete(group);
    this.retries.forget(group);
    if (typeof token === 'string') this.settle(token)?.done();
    this.options.stats.cluster_history_gaps++;
  }

  /** A resume's answer: the members get the messages after their position, in order; null when they cannot (not kept, too many, another epoch). */
  private resumed(group: string, top: number, epoch: string, frames: readonly string[] | null): void {
    this.resuming.delete(group);
    this.retries.forget(group);
    if (!this.positions.has(group)) return; // its members left meanwhile
    const { stats, link } = this.options;
    if (frames === null) stats.cluster_history_gaps++;
    else for (const frame of frames) link.groupPub(group, frame);
    stats.cluster_history_resumed += frames?.length ?? 0;
    this.positions.set(group, { epoch, offset: top });
  }

  /**
   * A join answered at `top`: where the node is in the group, unless it heard further already.
   * Not if its member left (or closed) while the join was being answered: the leave came first,
   * and a position kept now would never be removed (nor would its group stop being resumed
   * after each outage).
   */
  private reached(group: string, epoch: string, top: number): void {
    if (!this.options.hasMembers(group)) return;
    const position = this.positions.get(group);
    if (position === undefined || position.epoch !== epoch || position.offset < top) this.positions.set(group, { epoch, offset: top });
  }

  /**
   * Runs the JOIN script for a join or a resume; its answer comes on the node's channel under the
   * token returned. `renew`: `since` is this node's own position, so Redis behind it lost what it
   * gave out, and the group takes a new epoch (HISTORY_JOIN).
   */
  private ask(rule: HistoryRule, group: string, since: number, sinceEpoch: string, renew: boolean, entry: PendingJoin | PendingResume): string {
    const token = (this.nextToken++).toString(36);
    this.pending.set(token, entry);
    this.turns.take(token, () => {
      entry.timer = setTimeout(() => this.refuse(token), this.answerTimeoutMs);
      this.run(HISTORY_JOIN, rule, group, [since, sinceEpoch, this.maxReplayBytes, this.nodeChannel, token, this.maxEntry, renew ? 1 : 0]).catch((err: unknown) => {
        // A resume is asked again: logged if it is given up (refuse).
        if (entry.kind === 'join') this.options.log.warn({ code: 'E_CLUSTER_UNAVAILABLE', err, group }, 'cluster: a join of a history group could not be answered');
        this.refuse(token);
      });
    });
    return token;
  }

  /** The `history` op (history-page.ts). */
  page(rule: HistoryRule, shard: number, sid: string, group: string, ref: string | null, since: number, limit: number): void {
    answerPage(this.pageParts, rule, shard, sid, group, ref, since, limit);
  }

  /**
   * Redis went away: the answers of the joins and resumes waiting will not come, and the node
   * hears nothing more until it is back: every history group with members here waits for its
   * resume.
   */
  redisLost(): void {
    this.turns.dropWaiting(); // refused below, never sent
    for (const token of [...this.pending.keys()]) this.refuse(token, false);
    this.retries.clear();
    this.serverId = ''; // it may come back as another server
    this.outages++;
    for (const group of this.positions.keys()) this.resuming.set(group, null);
  }

  /**
   * A join or resume that will not be answered. `gap`: a resume refused while Redis stays (its
   * script failed, or its answer did not come in time) is asked again a few times (retries),
   * the group's live messages still held back for its answer; past them it is given up, and its
   * members missed what it would have given them. One refused as Redis went is asked again when
   * it is back (redisLost).
   */
  private refuse(token: string, gap = true): void {
    const asked = this.settle(token);
    if (asked === undefined) return;
    if (asked.kind === 'resume') {
      const { group } = asked;
      if (gap && this.positions.has(group) && this.retries.schedule(group)) this.resuming.set(group, null);
      else {
        // Its group's messages flow again, and its members see the gap at their next one.
        this.resuming.delete(group);
        if (gap && this.positions.has(group)) {
          this.options.stats.cluster_history_gaps++;
          this.options.log.warn({ code: 'E_CLUSTER_UNAVAILABLE', group }, 'cluster: a history group could not be resumed: its members here missed messages');
        }
      }
    } else {
      this.options.answers.settle(asked.sid, asked.reserved, 0);
      this.options.link.groupJoinFailed(asked.shard, asked.sid, asked.group, asked.ref, HISTORY_UNAVAILABLE, 'E_CLUSTER_UNAVAILABLE');
    }
    asked.done();
  }

  private settle(token: string): PendingJoin | PendingResume | undefined {
    const asked = this.pending.get(token);
    if (asked === undefined) return undefined;
    this.pending.delete(token);
    clearTimeout(asked.timer);
    this.turns.done(token);
    return asked;
  }

  /** One script on `group`'s history, with the prelude's ARGV (history-scripts.ts). */
  private run(source: string, rule: HistoryRule, group: string, args: Array<string | number>): Promise<unknown> {
    // A fresh candidate each time: an epoch is never made twice, whatever Redis forgot in between.
    const { max_groups, max_bytes } = this.options.config.history;
    return this.options.scripts.run(source, [this.options.keys.prefix, group, rule.size, ttlMs(rule.ttl), Date.now(), newEpoch(), max_groups, max_bytes, this.serverId, ...args]);
  }
}

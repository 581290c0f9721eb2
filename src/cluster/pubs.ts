/**
 * Pubs across nodes: this node's (its clients' and the embedding API's) go to its own members
 * over the rings and to the other nodes' through Redis, one PUBLISH on the group's channel
 * (channels.ts); the other nodes' go to this node's members. A history group's are numbered in
 * Redis first (history.ts). Apart from the stored messages (intake.ts, messaging.ts): a pub is
 * never stored; one Redis cannot take is lost, and counted (cluster_pubs_lost).
 */
import { Buffer } from 'node:buffer';
import type { Processors } from '../broker/processors.js';
import type { ShardLink } from '../broker/shard-link.js';
import { encodeGroupMsgJson } from '../protocol/json-codec.js';
import type { Channels } from './channels.js';
import type { ClusterHistory } from './history.js';
import type { ClusterIntake, Reply } from './intake.js';
import type { ClusterStats } from './stats.js';

/** How every `msg` frame starts (json-codec.ts, json-group-frames.ts). */
const MSG_FRAME_START = '{"op":"msg",';
/**
 * PUBLISHes sent and not yet answered: past it a pub is not handed to a Redis that cannot keep
 * up (at most once, like any pub; counted in cluster_pubs_lost) rather than queued in memory
 * without bound.
 */
const MAX_PUBLISHES_IN_FLIGHT = 50_000;

export interface ClusterPubsParts {
  link: ShardLink;
  channels: Channels;
  history: ClusterHistory;
  processors: Processors;
  /** Its size limit, and the dead-lettering of a pub whose processor failed. */
  intake: ClusterIntake;
  stats: ClusterStats;
  /** Whether Redis is reachable now. */
  up(): boolean;
}

export class ClusterPubs {
  private publishesInFlight = 0;

  constructor(private readonly parts: ClusterPubsParts) {}

  /** A pub from another node, heard on `group`'s channel: to this node's members. */
  received(group: string, frame: Buffer): void {
    const { link, history, stats } = this.parts;
    stats.cluster_pubs_in++;
    const text = frame.toString();
    // A history group's messages come from Redis (HISTORY_APPEND), complete: nothing else is one of them.
    if (history.ruleOf(group) === null) link.groupPub(group, text);
    else if (!text.startsWith(MSG_FRAME_START)) stats.cluster_malformed++;
    else if (history.received(group, text)) link.groupPub(group, text);
  }

  /**
   * A pub to this node's members and, through Redis, to every other node's; a pub to a history
   * group goes through Redis to all of them, this one too, once numbered there (history.ts).
   */
  publish(id: string, from: string, group: string, data: string, pri: number, type: string | null, reply: Reply, receivedAt = 0): void {
    const { processors, intake, history } = this.parts;
    const send = (dataJson: string, p: number): void => {
      const over = intake.oversize(dataJson);
      if (over !== null) return reply.fail('E_TOO_LARGE', over);
      const ts = Date.now();
      const rule = history.ruleOf(group);
      if (rule !== null) return history.publish(rule, id, from, group, dataJson, p, ts, reply);
      const frame = encodeGroupMsgJson(id, from, group, dataJson, p, ts);
      this.parts.link.groupPub(group, frame, receivedAt);
      this.publishAnswered(group, Buffer.from(frame), id, reply);
    };
    if (!processors.has(type)) return send(data, pri);
    const incoming = { target: `p:${group}`, from, group, data, pri, at: 0, strategy: null };
    // Dead-lettered in Redis, as one process does (its publisher gets the ack with the pub's id).
    const failed = (reason: string): void => intake.processorFailed(type ?? '', reason, incoming, reply, id);
    processors.run(type, incoming, { pass: send, drop: () => reply.ok(id), fail: failed, abandon: (reason) => reply.fail('E_CLUSTER_UNAVAILABLE', reason) });
  }

  /**
   * A pub already delivered to this node's members, to the other nodes, its publisher answered
   * once Redis took it: never an ack for what the other nodes will not get (a pub acked as it
   * was sent, into a frozen Redis, never reached another node: a review's chaos runs).
   */
  publishAnswered(group: string, frame: Uint8Array, id: string, reply: Reply): void {
    const refused = this.publishOut(group, frame, (published) => {
      if (published) reply.ok(id);
      else reply.fail('E_CLUSTER_UNAVAILABLE', 'Redis did not answer the publish: delivered to the members on this node; the other nodes may not get it');
    });
    if (refused === 'down') reply.fail('E_CLUSTER_UNAVAILABLE', 'Redis is unreachable: delivered to the members on this node only');
    if (refused === 'busy') reply.fail('E_OVERLOADED', `${MAX_PUBLISHES_IN_FLIGHT} publishes are waiting for Redis: delivered to the members on this node only; retry shortly`);
  }

  /**
   * A pub already delivered to this node's members (CLUSTER_PUB, or `publish`): to the other
   * nodes. Null once handed to Redis (then `settled` is told whether Redis took it); else why
   * not (counted lost): Redis is down, or too many publishes wait for it.
   */
  publishOut(group: string, frame: Uint8Array, settled?: (published: boolean) => void): 'down' | 'busy' | null {
    const { stats } = this.parts;
    const refused = !this.parts.up() ? 'down' : this.publishesInFlight >= MAX_PUBLISHES_IN_FLIGHT ? 'busy' : null;
    if (refused !== null) {
      stats.cluster_pubs_lost++;
      return refused;
    }
    this.publishesInFlight++;
    this.parts.channels.publishGroup(group, frame).then(
      () => {
        this.publishesInFlight--;
        stats.cluster_pubs_out++;
        settled?.(true);
      },
      () => {
        this.publishesInFlight--;
        stats.cluster_pubs_lost++;
        settled?.(false);
      },
    );
    return null;
  }
}

/**
 * Groups beyond their members in cluster mode: group presence, history with offsets, and the
 * `presence` and `history` ops (docs/messaging.md, "Presence and history in cluster mode").
 *
 * - `presence` answers come from the cluster's presence in Redis (presence.ts): every member
 *   connection on every live node. A node writes a member there before its `joined`, so a
 *   connection always sees its own join. Without Redis the answer is E_CLUSTER_UNAVAILABLE.
 * - Presence events (`join` with `presence: true`) and history are this node's, made by the
 *   broker's own parts (src/broker/groups.ts, in memory: a node has no LMDB store):
 *   events tell the joins and leaves of the members on this node; a history group's messages
 *   get their offsets from this node, in the order they reach it (its own pubs and those of
 *   the other nodes, re-sequenced as they arrive), under this node's epoch. So offsets have no
 *   gaps and recovery is exact on the node a client was on; on another node the epoch differs
 *   and the client reloads (`recovered: false`). What a node cannot vouch for it forgets (new
 *   epoch): a group it stopped hearing (its last member here left), and every group after
 *   Redis was unreachable (other nodes' messages were missed meanwhile).
 */
import { BrokerGroups } from '../broker/groups.js';
import type { RingShardLink } from '../broker/ring-link.js';
import type { Config } from '../config/schema.js';
import { ToBroker } from '../link/records.js';
import { encodePresenceAnswer } from '../protocol/json-group-frames.js';
import type { Logger } from '../util/logger.js';
import type { ClusterPresence } from './presence.js';

export interface ClusterGroupsOptions {
  config: Config;
  instance: string;
  link: RingShardLink;
  log: Logger;
  presence: ClusterPresence;
  /** Whether `group` has members on this node. */
  hasMembers(group: string): boolean;
  /** Whether Redis is reachable now. */
  up(): boolean;
}

interface GroupMsgFields {
  id: string;
  from: string;
  data: unknown;
  pri: number;
  ts: number;
}

export class ClusterGroups {
  private readonly groups: BrokerGroups;
  private readonly maxList: number;

  constructor(private readonly options: ClusterGroupsOptions) {
    const { config, instance, link, log } = options;
    if (config.history.persist && config.websocket.history.length > 0) log.warn('history.persist needs the LMDB store: in cluster mode each node keeps its groups\' history in memory');
    this.groups = new BrokerGroups({ config, store: null, instance, link, log }, options.hasMembers);
    this.maxList = config.websocket.presence.max_list;
  }

  start(): void {
    this.groups.start();
  }

  stop(): Promise<void> {
    return this.groups.stop();
  }

  /** This node's members, for presence events. */
  get events(): BrokerGroups['presence'] {
    return this.groups.presence;
  }

  /** GROUP_JOIN, GROUP_LEAVE and HISTORY from this node's history; PRESENCE_QUERY from Redis. */
  onRecord(shard: number, kind: number, f: unknown[]): void {
    if (kind !== ToBroker.PRESENCE_QUERY) {
      this.groups.requests.onRecord(shard, kind, f);
      return;
    }
    const [sid, group, ref, counts] = f as [string, string, string | null, number];
    const { link, presence } = this.options;
    const unavailable = (): void => link.error(shard, sid, 'E_CLUSTER_UNAVAILABLE', 'presence across the nodes is kept in Redis, which is unreachable', ref);
    if (!this.options.up()) return unavailable();
    presence.group(group).then((users) => {
      let conns = 0;
      for (const count of users.values()) conns += count;
      const listed = counts === 1 || users.size > this.maxList ? null : users;
      link.reply(shard, sid, encodePresenceAnswer(group, ref ?? undefined, listed, users.size, conns));
    }, unavailable);
  }

  /** A pub of this node to `group`: its offset and frame when the group keeps history, else null. */
  sequence(group: string, id: string, from: string, dataJson: string, pri: number, ts: number): { offset: number; frame: string } | null {
    return this.groups.history?.append(group, id, from, dataJson, pri, ts) ?? null;
  }

  /**
   * The frame of a pub from another node, as this node's shards publish it: re-sequenced here
   * when its group keeps history; null when it does and the frame is not a `msg` (dropped).
   */
  fromOtherNode(group: string, frame: Buffer): string | null {
    const text = frame.toString();
    const history = this.groups.history;
    if (history === null || !history.keeps(group)) return text;
    const m = parseGroupMsg(text);
    if (m === null) return null;
    return history.append(group, m.id, m.from, JSON.stringify(m.data), m.pri, m.ts)?.frame ?? text;
  }

  /** The node no longer hears `group` from the other nodes: its history here has a hole from now on. */
  stoppedHearing(group: string): void {
    this.groups.history?.forget(group);
  }

  /** Redis is back: what the other nodes published meanwhile never reached this node. */
  missedOthers(): void {
    this.groups.history?.forgetAll();
  }
}

/** The fields of a `msg` frame as json-codec.ts writes it; null when it is not one. */
function parseGroupMsg(text: string): GroupMsgFields | null {
  try {
    const m = JSON.parse(text) as Partial<GroupMsgFields> & { op?: unknown };
    if (m.op !== 'msg' || typeof m.id !== 'string' || typeof m.from !== 'string' || typeof m.pri !== 'number' || typeof m.ts !== 'number') return null;
    return { id: m.id, from: m.from, data: m.data, pri: m.pri, ts: m.ts };
  } catch {
    return null;
  }
}

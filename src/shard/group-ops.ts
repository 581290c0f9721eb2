/**
 * A shard's side of groups beyond the fast path: `join` and `leave` (with presence events and
 * history), and the `presence` and `history` ops, which the broker answers.
 *
 * A group without history is joined here at once, as it always was: subscribed to its uWS
 * topic, `joined` sent. A group that keeps history is joined through the broker, which gives
 * its messages their offsets: the connection is subscribed only when the broker's JOINED
 * arrives, and a join with `since` is unsubscribed at once until then. What the broker writes
 * to this shard arrives in the order written, so every message of the group up to JOINED's top
 * offset reaches the shard before JOINED (the connection does not get them live: the replay
 * before JOINED carries them), and every later one after it (live). Leaves of such a group go
 * through the broker too while it may still answer a join, so that replies keep their order.
 *
 * In cluster mode (src/cluster) every join and leave goes through the broker, history or not:
 * the node answers JOINED once it hears the group's pubs from every node (it subscribed the
 * group's Redis channel), so a pub sent anywhere after the `joined` reaches the member.
 *
 * Routing by interest (src/shared/interest-table.ts): a connection that becomes a member is
 * counted before anything else is done for its join (before the socket subscribes, before the
 * broker hears of it, and so before JOINED and the live messages after its top offset are
 * written to this shard); one that stops being a member is counted out once its socket is
 * unsubscribed: at once, or at LEFT for a leave that goes through the broker (until then the
 * socket still gets the group's messages, so the broker must still send them to this shard).
 *
 * Replies go out in the connection's encoding (conn.frames, out.ts), and a msgpack connection
 * is subscribed to the binary topics (binaryTopic() of the group, and of its presence topic).
 * A msgpack connection's replay may still be in the codec pool when JOINED arrives (out.ts
 * queues what follows it): the group's live messages then reach it through its queue, behind
 * the replay, until the queue has gone out; only then is it subscribed (catching up).
 */
import { presenceTopic } from '../link/records.js';
import type { ErrorCode } from '../protocol/errors.js';
import type { ClientFrame, Since } from '../protocol/frames.js';
import type { HistoryPatterns } from '../shared/history-patterns.js';
import type { InterestRow } from '../shared/interest-table.js';
import { binaryTopic, type Broadcast } from './broadcast.js';
import type { BrokerLink } from './broker-link.js';
import { connOf, type Connection, type Socket } from './connection.js';
import type { Fail } from './fail.js';
import type { Out } from './out.js';
import type { Backpressure } from './backpressure.js';
import type { ConnectionRegistry } from './registry.js';

/** A join or leave waiting for the broker (Connection.groupOps): its kind, and whether the join made the connection a member. */
const JOIN = 0;
const RECOVER = 1;
const LEAVE = 2;
const KIND = 3;
export const MISSED_WHILE_REFUSED = 'you stay a member, but messages published while this join was handled may have been missed: join with the since of the last message you got to recover them';
const NEW_MEMBER = 4;
/** A LEAVE that ended a membership: counted out of the interest table at its LEFT (the socket stays subscribed until then). */
const COUNTED = 8;

export interface GroupOpsOptions {
  /** Which groups keep history (websocket.history). */
  patterns: HistoryPatterns;
  /** Cluster mode: every join and leave goes through the broker. */
  clustered: boolean;
  /** This shard's row of the interest table. */
  interest: InterestRow;
  maxGroupsPerConnection: number;
  /** Whether a connection's join, presence or history query is refused (E_OVERLOADED) while the broker is behind. */
  backpressure: Pick<Backpressure, 'refuses'>;
  link: Pick<BrokerLink, 'joined' | 'left' | 'groupJoin' | 'groupLeave' | 'presenceQuery' | 'historyQuery'>;
  registry: ConnectionRegistry;
  fail: Fail;
  out: Pick<Out, 'send' | 'deliver' | 'after'>;
}

/** A connection catching up with a group: live messages go through its queue until `ws` is subscribed. */
interface CatchUp {
  ws: Socket;
}

const textDecoder = new TextDecoder();

export class GroupOps {
  private readonly patterns: HistoryPatterns;
  private readonly link: GroupOpsOptions['link'];
  private readonly fail: Fail;
  private readonly out: GroupOpsOptions['out'];
  /** Per history group, the connections catching up with it (see the top of this file). */
  private readonly catching = new Map<string, Map<Connection, CatchUp>>();

  constructor(private readonly options: GroupOpsOptions) {
    this.patterns = options.patterns;
    this.link = options.link;
    this.fail = options.fail;
    this.out = options.out;
  }

  join(ws: Socket, conn: Connection, frame: Extract<ClientFrame, { op: 'join' }>): void {
    const { group, ref } = frame;
    if (conn.allowed !== null && !conn.allowed.allows(group)) return this.fail(ws, conn, 'E_FORBIDDEN', `not allowed to join ${group}`, ref);
    const viaBroker = this.viaBroker(group);
    const wasMember = conn.groups.has(group);
    const watch = frame.presence === true;
    const watched = conn.watching?.has(group) ?? false;
    // Any join that writes to the broker (its MEMBERSHIP, or the join itself) is refused while
    // the link to it is backed up: otherwise join/leave churn queues records without bound.
    if ((viaBroker || !wasMember || watch !== watched) && this.brokerBusy(ws, conn, ref)) return;
    if (!wasMember) {
      const max = this.options.maxGroupsPerConnection;
      if (conn.groups.size >= max) return this.fail(ws, conn, 'E_FORBIDDEN', `at most ${max} groups per connection`, ref);
      conn.groups.add(group);
      this.options.interest.joined(group);
    }
    if (watch !== watched) this.setWatching(ws, conn, group, watch);
    if (!wasMember || watch !== watched) this.link.joined(conn, group, watch);
    if (viaBroker) return this.historyJoin(conn, ws, group, ref, frame.since, !wasMember);
    // Behind frames that wait for the codec pool, as `joined` is: no message of the group may come before it.
    if (!wasMember) this.out.after(ws, conn, () => conn.groups.has(group) && ws.subscribe(topicOf(conn, group)));
    this.out.send(ws, conn, conn.frames.joined(group, ref));
  }

  leave(ws: Socket, conn: Connection, group: string, ref: string | undefined): void {
    // A leave that ends a membership is never refused (there are at most as many as admitted
    // joins); one that only queues behind ops still waiting for the broker could repeat forever.
    if (!conn.groups.has(group) && conn.groupOps?.has(group) === true && this.brokerBusy(ws, conn, ref)) return;
    const wasMember = conn.groups.delete(group);
    if (wasMember) this.link.left(conn, group);
    if (conn.watching?.delete(group)) ws.unsubscribe(topicOf(conn, presenceTopic(group)));
    const ops = conn.groupOps?.get(group);
    if (ops !== undefined || (wasMember && this.viaBroker(group))) {
      // Still subscribed until LEFT: still counted, or the broker could skip this shard meanwhile.
      this.opsOf(conn, group).push(LEAVE | (wasMember ? COUNTED : 0));
      this.link.groupLeave(conn, group, ref);
      return;
    }
    if (wasMember) {
      ws.unsubscribe(topicOf(conn, group));
      this.options.interest.left(group);
    }
    this.out.send(ws, conn, conn.frames.left(group, ref));
  }

  /** `presence`: the broker answers with the group's users (or totals). */
  presence(ws: Socket, conn: Connection, frame: Extract<ClientFrame, { op: 'presence' }>): void {
    const refusal = this.mayAsk(conn, frame.group);
    if (refusal !== null) return this.fail(ws, conn, refusal, this.refusalText(refusal, frame.group), frame.ref);
    if (this.brokerBusy(ws, conn, frame.ref)) return;
    this.link.presenceQuery(conn, frame.group, frame.ref, frame.counts);
  }

  /** `history`: the broker answers with a page of the group's kept messages. */
  history(ws: Socket, conn: Connection, frame: Extract<ClientFrame, { op: 'history' }>): void {
    const { group, ref } = frame;
    const refusal = this.mayAsk(conn, group);
    if (refusal !== null) return this.fail(ws, conn, refusal, this.refusalText(refusal, group), ref);
    if (!this.patterns.keeps(group)) return this.fail(ws, conn, 'E_BAD_FRAME', `${group} keeps no history (websocket.history)`, ref);
    if (this.brokerBusy(ws, conn, ref)) return;
    this.link.historyQuery(conn, group, ref, frame.since, frame.limit ?? 0);
  }

  /**
   * The broker's answer to a join of a history group (ToShard.JOINED fields): the replay went
   * out before it (REPLY records); now the connection gets the group's live messages.
   */
  joined(f: unknown[]): void {
    const [sid, group, ref, top, epoch, recovered, error, code] = f as [string, string, string | null, number, string, number, string | null, ErrorCode?];
    const ws = this.options.registry.sid(sid);
    if (ws === undefined) return;
    const conn = connOf(ws);
    const op = this.shift(conn, group);
    if (op === undefined) return;
    if (error !== null) {
      const next = conn.groupOps?.get(group);
      const madeMember = (op & NEW_MEMBER) !== 0;
      const undo = madeMember && next === undefined;
      // A join behind this one found the connection a member because of this one: whether it stays one is now that join's answer.
      const passed = madeMember && next !== undefined && (next[0]! & KIND) !== LEAVE;
      if (passed) next[0] = next[0]! | NEW_MEMBER;
      if (undo && conn.groups.delete(group)) {
        this.options.interest.left(group);
        this.link.left(conn, group);
        if (conn.watching?.delete(group)) ws.unsubscribe(topicOf(conn, presenceTopic(group)));
      }
      const member = !undo && !passed && conn.groups.has(group);
      this.settle(ws, conn, group, member);
      // A member stopped getting the group's live messages when it asked for a replay: it may have missed some.
      const missed = member && (op & KIND) === RECOVER ? `; ${MISSED_WHILE_REFUSED}` : '';
      return this.fail(ws, conn, code ?? 'E_BAD_FRAME', error + missed, ref ?? undefined);
    }
    const { frames } = conn;
    this.out.send(ws, conn, top < 0 ? frames.joined(group, ref ?? undefined) : frames.historyJoined(group, ref ?? undefined, top, epoch, recovered < 0 ? undefined : recovered === 1));
    this.settle(ws, conn, group, true);
  }

  /** The broker's answer to a leave of a history group (ToShard.LEFT fields). */
  left(f: unknown[]): void {
    const [sid, group, ref] = f as [string, string, string | null];
    const ws = this.options.registry.sid(sid);
    if (ws === undefined) return;
    const conn = connOf(ws);
    const op = this.shift(conn, group);
    if (op === undefined) return;
    this.settle(ws, conn, group, false);
    if ((op & COUNTED) !== 0) this.options.interest.left(group);
    this.out.send(ws, conn, conn.frames.left(group, ref ?? undefined));
  }

  /** A message of `group` from the broker, just published to its subscribers: to those catching up with it, through their queues. */
  livePub(group: string, message: Broadcast): void {
    if (this.catching.size === 0) return;
    const conns = this.catching.get(group);
    if (conns === undefined) return;
    for (const [conn, { ws }] of conns) {
      // Only msgpack connections have frames waiting for the pool; a JSON one would get text all the same.
      this.out.deliver(ws, conn, conn.frames.binary ? message.binary() : textDecoder.decode(message.json()), group);
    }
  }

  /** The connection closed: it catches up with nothing any more. */
  closed(conn: Connection): void {
    // Leaves the broker had not answered yet: counted out now.
    if (conn.groupOps !== null) for (const [group, ops] of conn.groupOps) for (const op of ops) if ((op & COUNTED) !== 0) this.options.interest.left(group);
    if (this.catching.size === 0) return;
    for (const group of conn.groups) this.stopCatching(conn, group);
    if (conn.groupOps !== null) for (const group of conn.groupOps.keys()) this.stopCatching(conn, group);
  }

  /** Joins and leaves of `group` wait for the broker: it keeps history, or this is a node of a cluster. */
  private viaBroker(group: string): boolean {
    return this.options.clustered || (this.patterns.any && this.patterns.keeps(group));
  }

  private historyJoin(conn: Connection, ws: Socket, group: string, ref: string | undefined, since: Since | undefined, newMember: boolean): void {
    // Whatever of the group reaches this shard before JOINED is in the replay: not live as well.
    if (since !== undefined) this.unsubscribe(ws, conn, group);
    this.opsOf(conn, group).push((since === undefined ? JOIN : RECOVER) | (newMember ? NEW_MEMBER : 0));
    this.link.groupJoin(conn, group, ref, since);
  }

  /**
   * After the broker answered one op: the connection gets the group's live messages when it is
   * a member at this point of the group's sequence (`member`), unless a join with `since`
   * still waits (its replay will carry them).
   */
  private settle(ws: Socket, conn: Connection, group: string, member: boolean): void {
    const ops = conn.groupOps?.get(group);
    if (ops !== undefined && ops.some((op) => (op & KIND) === RECOVER)) return;
    if (member) this.subscribe(ws, conn, group);
    else this.unsubscribe(ws, conn, group);
  }

  /** To the group's live messages: at once, or once what waits in the connection's queue has gone out (catching up meanwhile). */
  private subscribe(ws: Socket, conn: Connection, group: string): void {
    const topic = topicOf(conn, group);
    if (conn.outq === null || ws.isSubscribed(topic)) {
      this.stopCatching(conn, group);
      ws.subscribe(topic);
      return;
    }
    let conns = this.catching.get(group);
    if (conns === undefined) this.catching.set(group, (conns = new Map()));
    const catchUp: CatchUp = { ws };
    conns.set(conn, catchUp);
    const caughtUp = (clear: boolean): void => {
      // Not if a leave, a join with `since` or another catch-up came since.
      if (this.catching.get(group)?.get(conn) !== catchUp) return;
      // Live messages queued behind a frame still in the pool (a history page) would be overtaken by the next ones published.
      if (!clear) return this.out.after(ws, conn, caughtUp, group);
      this.stopCatching(conn, group);
      ws.subscribe(topic);
    };
    this.out.after(ws, conn, caughtUp, group);
  }

  private unsubscribe(ws: Socket, conn: Connection, group: string): void {
    this.stopCatching(conn, group);
    ws.unsubscribe(topicOf(conn, group));
  }

  private stopCatching(conn: Connection, group: string): void {
    const conns = this.catching.get(group);
    if (conns === undefined || !conns.delete(conn)) return;
    if (conns.size === 0) this.catching.delete(group);
  }

  private opsOf(conn: Connection, group: string): number[] {
    const all = (conn.groupOps ??= new Map());
    let ops = all.get(group);
    if (ops === undefined) all.set(group, (ops = []));
    return ops;
  }

  /** The oldest op of `group` waiting for the broker, taken off. */
  private shift(conn: Connection, group: string): number | undefined {
    const ops = conn.groupOps?.get(group);
    if (ops === undefined) return undefined;
    const op = ops.shift();
    if (ops.length === 0) conn.groupOps!.delete(group);
    return op;
  }

  private setWatching(ws: Socket, conn: Connection, group: string, watch: boolean): void {
    if (watch) {
      (conn.watching ??= new Set()).add(group);
      ws.subscribe(topicOf(conn, presenceTopic(group)));
    } else {
      conn.watching!.delete(group);
      ws.unsubscribe(topicOf(conn, presenceTopic(group)));
    }
  }

  /** What asks the broker is refused, not queued without bound, while the ring to it is backed up (a leave that ends a membership never is). */
  private brokerBusy(ws: Socket, conn: Connection, ref: string | undefined): boolean {
    if (!this.options.backpressure.refuses(conn)) return false;
    this.fail(ws, conn, 'E_OVERLOADED', 'the message broker is behind; retry shortly', ref);
    return true;
  }

  /** Members may ask about a group; so may users whose token's `groups` claim allows it. */
  private mayAsk(conn: Connection, group: string): ErrorCode | null {
    if (conn.groups.has(group)) return null;
    if (conn.allowed === null) return 'E_NOT_MEMBER';
    return conn.allowed.allows(group) ? null : 'E_FORBIDDEN';
  }

  private refusalText(code: ErrorCode, group: string): string {
    return code === 'E_FORBIDDEN' ? `not allowed to ask about ${group}` : `join ${group} before asking about it`;
  }
}

/** The uWS topic that carries `topic` (a group, or its presence topic) in the connection's encoding. */
function topicOf(conn: Connection, topic: string): string {
  return conn.frames.binary ? binaryTopic(topic) : topic;
}

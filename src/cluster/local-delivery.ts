/**
 * This node's end of the deliveries of stored messages (messaging.ts decides them): to the
 * shards holding the recipient's connections, several as `batch` frames; held for connections
 * whose CONNECT is under way (they get them after their backlog); and remembered until their
 * ack or deadline, which is what a drain waits for. The same whether this node routed the
 * message or another node's record brought it (channels.ts).
 */
import type { Config } from '../config/schema.js';
import type { ShardLink } from '../broker/shard-link.js';
import { Priority } from '../protocol/frames.js';
import { batchFrames } from '../protocol/json-codec.js';
import type { LocalPresence } from './presence.js';

/** A message as it goes out. */
export interface Outgoing {
  id: string;
  /** Its `msg` frame. */
  frame: string;
  /** Its ack deadline (epoch ms); 0: not known, one ack_timeout from now. */
  deadline: number;
  /** CRITICAL: never held for a batch, it travels alone (ahead of the batch: a backlog is in priority order). */
  critical: boolean;
}

/** The Outgoing of a message with priority `pri`. */
export function outgoing(id: string, frame: string, deadline: number, pri: number): Outgoing {
  return { id, frame, deadline, critical: pri === Priority.CRITICAL };
}

export class LocalDelivery {
  /** Connections whose CONNECT (or rescan) is to come or in flight: deliveries for their user wait here, then follow their backlog. */
  private readonly connecting = new Map<string, Outgoing[]>();
  /** Those of `connecting` that have their welcome (welcomed without Redis, until their rescan lists them): their user's deliveries go connection by connection. */
  private readonly welcomedHeld = new Set<string>();
  /**
   * Deliveries handed to this node's connections and not acknowledged here yet, with their ack
   * deadline (past it they no longer count: the sweep routes them again). What a drain waits for.
   */
  private readonly unacked = new Map<string, number>();
  /**
   * Messages already in flight that a connection's CONNECT handed it (its backlog), by id: the
   * connections, and the deadline. The node that routed such a message before that CONNECT may
   * deliver it here to the user after the backlog went out: not to these connections again, and
   * to none once acknowledged here (`acked`): that record can arrive after the ack.
   */
  private readonly listed = new Map<string, { sids: Set<string>; deadline: number; acked: boolean }>();
  /**
   * Messages first handed out here while connections were held for a rescan (`welcomedHeld`),
   * to some connections only (toSid: a new connection's backlog, what was held for one), by id:
   * those connections, and those that got it since. `unacked` alone, per node, made the rescan
   * leave such a message out for the held connections, which lack it: they got it at its ack
   * deadline. A message handed out otherwise (toUser, or before the hold) reached every
   * connection of its user, the held ones included, and has no entry. Kept only from the holds,
   * so that routing (toSid for every `any`) adds nothing in the steady state.
   */
  private readonly handedToSome = new Map<string, Set<string>>();
  /**
   * Messages acknowledged here while a rescan's listing is under way (`rescans`): one listed
   * before its ack (between the listing's pages) is no longer in flight, but the ack made
   * `unacked` forget it was handed out here, and the rescan handed it once more. Kept only while
   * a rescan runs, so that an ack keeps nothing otherwise.
   */
  private readonly ackedInRescan = new Set<string>();
  private rescans = 0;
  /**
   * Connections whose CONNECT failed with the node up, until their relisting (tracked): the
   * messages handed to each since, which it leaves out. `handedTo` cannot tell: what this node
   * handed to the user's other connections before such a one opened, it counts as handed to it.
   */
  private readonly sinceFailed = new Map<string, Set<string>>();

  constructor(
    private readonly config: Config,
    private readonly local: LocalPresence,
    private readonly link: ShardLink,
  ) {}

  /**
   * Messages (in order) to every connection of `user` here, several as `batch` frames.
   * `arrivedAt` (0: none): the one message's arrival (epochMs() of its sender's shard, on
   * whichever node), timed as the send latency by the first shard handing it out.
   */
  toUser(user: string, msgs: readonly Outgoing[], arrivedAt = 0): void {
    const conns = this.local.byUser.get(user);
    if (!conns || msgs.length === 0) return;
    if (msgs.some(({ id }) => this.listedNow(id) !== null) || this.holdsWelcomed(conns.keys())) {
      // Connection by connection (rare: a route that crossed a CONNECT, or one held for its rescan), so that
      // none gets one twice; one still waiting for its backlog gets them after it, as below.
      for (const sid of conns.keys()) {
        const mine = msgs.filter(({ id }) => !this.hasHad(id, sid));
        const waiting = this.connecting.get(sid);
        if (waiting !== undefined) waiting.push(...mine);
        else {
          this.toSid(sid, mine, arrivedAt);
          arrivedAt = 0; // timed once, as below
        }
      }
      return;
    }
    for (const { id, deadline } of msgs) this.handedOut(id, deadline);
    if (this.sinceFailed.size > 0) for (const sid of conns.keys()) for (const { id } of msgs) this.sinceFailed.get(sid)?.add(id);
    // To every connection of the user (none is held for a rescan, see above): not to some only.
    if (this.handedToSome.size > 0) for (const { id } of msgs) this.handedToSome.delete(id);
    // Connections still waiting for their backlog get these after it (a shard skips them: they have no welcome yet).
    for (const sid of conns.keys()) this.connecting.get(sid)?.push(...msgs);
    const frames = this.batched(msgs);
    for (const shard of this.local.shardsOf(user)) {
      for (const frame of frames) this.link.deliverToUser(shard, user, frame, arrivedAt, arrivedAt > 0 ? 1 : 0);
      arrivedAt = 0;
    }
  }

  /** Messages (in order) to connection `sid`, several as `batch` frames; `arrivedAt` as for toUser. */
  toSid(sid: string, msgs: readonly Outgoing[], arrivedAt = 0): void {
    const conn = this.local.bySid.get(sid);
    if (!conn || msgs.length === 0) return;
    for (const { id, deadline } of msgs) {
      if (this.welcomedHeld.size > 0 || this.handedToSome.size > 0) this.handedToSid(id, sid);
      this.handedOut(id, deadline);
      if (this.sinceFailed.size > 0) this.sinceFailed.get(sid)?.add(id);
    }
    for (const frame of this.batched(msgs)) this.link.deliverToSid(conn.shard, sid, frame, arrivedAt, arrivedAt > 0 ? 1 : 0);
  }

  /** Messages in flight that CONNECT listed for `sid`, which it now gets: see `listed`. */
  backlogInFlight(sid: string, msgs: readonly Outgoing[]): void {
    for (const { id, deadline } of msgs) {
      const entry = this.listed.get(id) ?? { sids: new Set<string>(), deadline: 0, acked: false };
      entry.sids.add(sid);
      entry.deadline = deadline > 0 ? deadline : Date.now() + this.config.websocket.delivery.ack_timeout * 1000;
      this.listed.set(id, entry);
    }
  }

  /** What `listed` knows of message `id` until its deadline (a redelivery after it goes to all). */
  private listedNow(id: string): { sids: Set<string>; acked: boolean } | null {
    const entry = this.listed.get(id);
    return entry !== undefined && entry.deadline > Date.now() ? entry : null;
  }

  /** Whether connection `sid` must not get message `id` again: its CONNECT handed it over, or it was acknowledged here since. */
  private hasHad(id: string, sid: string): boolean {
    const entry = this.listedNow(id);
    return entry !== null && (entry.acked || entry.sids.has(sid));
  }

  /**
   * The CONNECT of `sid` is under way: what comes for its user meanwhile is held for it.
   * `welcomed`: a connection with its welcome (welcomed without Redis, until its rescan), which
   * its shard would not skip.
   */
  hold(sid: string, welcomed = false): void {
    // Kept if it is held already (a connection held since it was welcomed without Redis, which
    // its rescan lists): what came for it meanwhile is not lost.
    if (!this.connecting.has(sid)) this.connecting.set(sid, []);
    if (welcomed) this.welcomedHeld.add(sid);
  }

  /** Its CONNECT answered (or failed): what was held for `sid`, in order. */
  release(sid: string): Outgoing[] {
    const held = this.connecting.get(sid) ?? [];
    this.connecting.delete(sid);
    this.welcomedHeld.delete(sid);
    return held;
  }

  /** Whether one of `sids` is held and has its welcome (its shard would hand it a delivery to its user). */
  private holdsWelcomed(sids: Iterable<string>): boolean {
    if (this.welcomedHeld.size === 0) return false;
    for (const sid of sids) if (this.welcomedHeld.has(sid)) return true;
    return false;
  }

  /** Whether this node handed message `id` to its connections and has not seen its ack or deadline pass. */
  handedHere(id: string): boolean {
    const deadline = this.unacked.get(id);
    return deadline !== undefined && deadline > Date.now();
  }

  /** Whether this node handed message `id` to connection `sid` (see `handedToSome`) and has not seen its ack or deadline pass. */
  handedTo(id: string, sid: string): boolean {
    return this.handedHere(id) && (this.handedToSome.get(id)?.has(sid) ?? true);
  }

  /** Message `id` goes to connection `sid` alone: kept in `handedToSome` when first handed out during a hold, or already there. */
  private handedToSid(id: string, sid: string): void {
    const some = this.handedToSome.get(id);
    if (some !== undefined) some.add(sid);
    else if (this.welcomedHeld.size > 0 && !this.handedHere(id)) this.handedToSome.set(id, new Set([sid]));
  }

  /** Connection `sid`'s CONNECT failed with the node up: what it is handed from now on is kept (see `sinceFailed`). */
  track(sid: string): void {
    if (!this.sinceFailed.has(sid)) this.sinceFailed.set(sid, new Set());
  }

  /** Its relisting hands it what it lacks (or it closed): what it was handed since its CONNECT failed, undefined if not tracked. */
  untrack(sid: string): ReadonlySet<string> | undefined {
    const had = this.sinceFailed.get(sid);
    this.sinceFailed.delete(sid);
    return had;
  }

  /** A rescan's listing begins (true) or its hand-over is done (false): see `ackedInRescan`. */
  rescanning(on: boolean): void {
    this.rescans += on ? 1 : -1;
    if (this.rescans === 0) this.ackedInRescan.clear();
  }

  /** Whether message `id` was acknowledged here during the rescans under way: listed before, it is no longer in flight. */
  ackedDuringRescan(id: string): boolean {
    return this.ackedInRescan.has(id);
  }

  /** Acknowledged through this node. */
  acked(id: string): void {
    this.unacked.delete(id);
    this.handedToSome.delete(id);
    if (this.rescans > 0) this.ackedInRescan.add(id);
    const entry = this.listed.get(id);
    if (entry !== undefined) entry.acked = true;
  }

  /** Deliveries to this node's connections still awaiting their ack (those past their deadline forgotten). */
  inflight(): number {
    const now = Date.now();
    for (const [id, deadline] of this.unacked) if (deadline <= now) this.unacked.delete(id);
    for (const id of this.handedToSome.keys()) if (!this.unacked.has(id)) this.handedToSome.delete(id);
    for (const [id, { deadline }] of this.listed) if (deadline <= now) this.listed.delete(id);
    return this.unacked.size;
  }

  /** The frames that carry `msgs`: each CRITICAL one alone, the others in `batch` frames, in the given order. */
  private batched(msgs: readonly Outgoing[]): string[] {
    if (msgs.length === 1) return [msgs[0]!.frame];
    const frames: string[] = [];
    let run: string[] = [];
    const flush = (): void => {
      frames.push(...batchFrames(run, this.config.websocket.performance.batch_size, this.link.maxFrameBytes));
      run = [];
    };
    for (const msg of msgs) {
      if (!msg.critical) {
        run.push(msg.frame);
        continue;
      }
      flush();
      frames.push(msg.frame);
    }
    flush();
    return frames;
  }

  /** A redelivery's deadline is further off than one ack_timeout (backoff): the scripts say when. */
  private handedOut(id: string, deadline: number): void {
    this.unacked.set(id, deadline > 0 ? deadline : Date.now() + this.config.websocket.delivery.ack_timeout * 1000);
  }
}

/**
 * Reliable messaging (`send`, `any`, `ack`) across nodes, on the Redis store (scripts.ts).
 * Whichever node a sender is on stores the message (intake.ts: the sender's `ack` follows the
 * store's reply), then routes it: a ROUTE script claims it and names the nodes holding the
 * recipient's connections (or the one member connection an `any` strategy picked), and the node
 * delivers to its own and PUBLISHes one record per other node. What nobody is there for waits in
 * Redis until a connection opens anywhere (CONNECT claims it) or a member joins (JOIN).
 * Deadlines, schedules and expiry are swept by every node (SWEEP); a script takes each message
 * once. What a script claimed reaches its connections through claimed-delivery.ts.
 *
 * So a stored message is delivered by whichever node its user connects to, and never by two
 * at once; a node that dies loses nothing acknowledged: its deliveries time out and are made
 * again by the others. Delivery is at least once, as on one process.
 */
import type { Config } from '../config/schema.js';
import { Latency, type LatencyRecorder } from '../metrics/latencies.js';
import { ACKS, ACKS_PER_SCRIPT } from './ack-script.js';
import { PUMP_CLAIMS } from './backlog.js';
import { ClaimedDelivery, type ClaimedDeliveryParts, type Fields } from './claimed-delivery.js';
import { ConnectionBacklogs } from './connection-backlogs.js';
import type { LocalDelivery } from './local-delivery.js';
import { logCommandFailure, timedOut } from './redis.js';
import { PUMP_GROUP, PUMP_MARKED, ROUTE_ANY } from './route-any-script.js';
import type { ScriptRunner } from './script-runner.js';
import { JOIN, SWEEP } from './scripts.js';
import { TimeoutFollowUps } from './timeout-follow-ups.js';
import { claimHoldMs, PUMP, ROUTE_USER } from './window-scripts.js';

/** Most due messages one sweep takes; the next sweep takes the rest. */
const SWEEP_BATCH = 500;
/** Most waiting `any` messages one PUMP_GROUP or PUMP_MARKED claims; the node runs it again for the rest. */
const PUMP_GROUP_CLAIMS = 500;
/** Most groups one PUMP_MARKED offers a freed window (one whose room is left by bytes only may fit none): the node runs it again for the rest. */
const PUMP_MARKED_GROUPS = 64;

/** How an ack's outcome is told to its connection. */
export interface AckReply {
  unknown(message: string): void;
  unavailable(message: string): void;
}
interface PendingAck {
  user: string;
  id: string;
  reply: AckReply;
}

export interface MessagingParts extends ClaimedDeliveryParts {
  scripts: ScriptRunner;
  /** Whether a shard of this node held records its ring had no room for, within the last ack_timeout: the SWEEP marks the node behind. */
  behind(): boolean;
  /** A script dropped the oldest dead letters to keep their bound (store.max_dead_letters): counted, and warned of. */
  deadDropped(letters: number): void;
  /**
   * Where the commit (frame received -> stored in Redis) and ack (delivered, by any node ->
   * acknowledged here) latencies are recorded. The send latency is the recipient's shard's, from
   * the arrival time its delivery carries, for a message routed at once (local-delivery.ts); to
   * another node the delivery record carries it (channels.ts).
   */
  latency?: LatencyRecorder;
}

export class ClusterMessaging {
  private readonly delivery: Config['websocket']['delivery'];
  private readonly prefix: string;
  /** Claimed messages to their connections, here and on the other nodes. */
  readonly claimed: ClaimedDelivery;
  private readonly here: LocalDelivery;
  /** How long this node's mark that it is behind (P bh:NODE) lasts unless renewed by its next sweep. */
  private readonly behindMarkMs: number;
  /**
   * How long a route's claim is marked as this node's last to its user (P wl:USER), and the
   * longest a PUMP's hand-out waits for such a record (record-waits.ts): a route's reply, and so
   * its record, comes within a command timeout, or the claim counts as failed.
   */
  private readonly routeMarkMs: number;
  /** A rescan after a timed-out SWEEP is scheduled (one at a time). */
  private rescanDue = false;
  /** Users whose ack timed out, to pump once Redis answers (one follow-up for all). */
  private readonly pumpDue = new Set<string>();
  /** Users whose PUMP is in flight: whether another was asked for meanwhile (one runs after it). */
  private readonly pumping = new Map<string, boolean>();
  /**
   * PUMP hand-outs whose wait for records (record-waits.ts) ended with Redis out of reach: their
   * records to the other nodes would fail, and those nodes' connections got the messages at
   * their ack deadlines (test/cluster-record-wait-outage.test.ts). Run once it answers (rescan), or at the stop.
   */
  private readonly heldForOutage: Array<() => void> = [];
  /** Acks read in this pass over the rings, to settle together (flushAcks). */
  private acks: PendingAck[] = [];
  private readonly followUps: TimeoutFollowUps;
  /** What a node's connections are handed of their user's messages: a new one's backlog, the rescan's. */
  readonly connections: ConnectionBacklogs;

  constructor(private readonly parts: MessagingParts) {
    this.delivery = parts.config.websocket.delivery;
    // Outlives the sweeps between two of this node's (another node's sweep may come first), and
    // a node gone while behind: Redis forgets its mark.
    this.behindMarkMs = Math.max(1000, 4 * parts.config.cluster.sweep_interval * 1000);
    this.prefix = parts.config.cluster.key_prefix;
    this.routeMarkMs = Math.round(parts.config.cluster.command_timeout * 1000);
    this.claimed = new ClaimedDelivery(parts);
    this.here = this.claimed.here;
    this.followUps = new TimeoutFollowUps({
      config: parts.config,
      log: parts.log,
      up: () => parts.up(),
      dueAt: (at) => parts.dueAt(at),
      script: (source, args) => this.script(source, args),
    });
    this.connections = new ConnectionBacklogs({
      ...parts,
      claimed: this.claimed,
      pump: (user) => this.pump(user),
      claimTimedOut: (target, at) => this.followUps.claimTimedOut(target, at, ''),
      afterTimeout: (again, then) => this.followUps.afterTimeout(again, then),
    });
  }

  // --- routing -------------------------------------------------------------------------------

  /**
   * Delivers a waiting message now if its recipient is online anywhere; else it waits in Redis.
   * `receivedAt` (0: none): its frame's arrival, when it is routed straight after its store.
   */
  route(id: string, target: string, receivedAt = 0): void {
    const { presence } = this.parts;
    const now = Date.now();
    const timing = [now, this.delivery.ack_timeout * 1000, this.delivery.backoff_multiplier, this.delivery.max_backoff * 1000, presence.aliveSince(now)];
    if (target.startsWith('u:')) {
      const user = target.slice(2);
      const window = [this.delivery.max_inflight_per_user, this.delivery.max_inflight_bytes_per_user];
      this.script<[string[], Fields] | 'pump' | null>(ROUTE_USER, [this.prefix, id, user, ...timing, ...window, this.parts.node, this.routeMarkMs]).then(
        (routed) => (routed === 'pump' ? this.pump(user) : routed && this.claimed.toUser(user, routed[0], routed[1], receivedAt)),
        (err: unknown) => this.claimFailed(err, 'route', target, now, id),
      );
    } else {
      const group = target.slice(2);
      const window = [this.delivery.max_inflight_per_user, this.delivery.max_inflight_bytes_per_user];
      this.script<[string, string, string, Fields] | 'pump' | null>(ROUTE_ANY, [this.prefix, id, group, ...timing, this.strategyOf(group), ...window]).then(
        (routed) => (routed === 'pump' ? this.pumpGroup(group) : routed && this.claimed.toMember(routed[0], routed[1], routed[3], receivedAt)),
        (err: unknown) => this.claimFailed(err, 'route', target, now, id),
      );
    }
  }

  // --- connections and members -----------------------------------------------------------------

  /** After an outage: every local user's presence is written again (by the caller); what waited for them, and for the groups they joined meanwhile, goes out. */
  rescan(): void {
    const { local } = this.parts;
    // First: what they hand to this node's connections is held for the rescan's listing (cutOff).
    this.handOutHeld();
    for (const [group, sids] of local.byGroup) {
      const conn = local.bySid.get(sids.values().next().value as string);
      if (conn) this.joined(conn.sid, group, conn.user, conn.weight).catch((err: unknown) => logCommandFailure(this.parts, err, 'rescan'));
    }
    this.connections.rescan();
  }

  /** The PUMP hand-outs held through an outage go now (see `heldForOutage`). */
  handOutHeld(): void {
    for (const handOut of this.heldForOutage.splice(0)) handOut();
  }

  /** A member connection joined `group` (recorded in Redis); `any` messages that waited for a member go out now, in queue order, as the members' windows allow. */
  joined(sid: string, group: string, user: string, weight: number): Promise<void> {
    return this.script<string[]>(JOIN, [this.prefix, this.parts.node, sid, group, user, weight]).then((waiting) => {
      if (waiting.length > 0) this.pumpGroup(group);
    });
  }

  /** The strategy of `group`'s `any` messages in the config (a message's own, or the group's set at run time, come first: in Redis). */
  private strategyOf(group: string): string {
    return this.delivery.group_strategies.get(group) ?? this.delivery.default_strategy;
  }

  /**
   * Routes `group`'s waiting `any` messages in queue order while some member's window has room
   * (PUMP_GROUP): a join, or a new message behind waiting ones.
   */
  private pumpGroup(group: string): void {
    const now = Date.now();
    const args = [
      this.prefix, group, now, this.delivery.ack_timeout * 1000, this.delivery.backoff_multiplier, this.delivery.max_backoff * 1000,
      this.parts.presence.aliveSince(now), this.strategyOf(group), this.delivery.max_inflight_per_user, this.delivery.max_inflight_bytes_per_user, '',
      PUMP_GROUP_CLAIMS,
    ];
    this.script<Array<[string, string, string, Fields]>>(PUMP_GROUP, args).then(
      (routed) => {
        for (const [node, sid, , f] of routed) this.claimed.toMember(node, sid, f, 0);
        // Cut short with more to claim: go on in another script, letting other commands run between.
        if (routed.length >= PUMP_GROUP_CLAIMS) this.pumpGroup(group);
      },
      (err: unknown) => this.claimFailed(err, 'pump', `g:${group}`, now, ''),
    );
  }

  /**
   * Offers the room in `user`'s freed window to the groups whose `any` messages waited for it
   * (PUMP_MARKED: in their turn, until it is full again). `upTo`: where the pass ends, from its
   * first script ('' : it starts).
   */
  private pumpMarked(user: string, upTo: string | number): void {
    const now = Date.now();
    const args: Array<string | number> = [
      this.prefix, user, now, this.delivery.ack_timeout * 1000, this.delivery.backoff_multiplier, this.delivery.max_backoff * 1000,
      this.parts.presence.aliveSince(now), this.delivery.default_strategy, this.delivery.max_inflight_per_user, this.delivery.max_inflight_bytes_per_user,
      PUMP_GROUP_CLAIMS, PUMP_MARKED_GROUPS, upTo,
    ];
    for (const [group, strategy] of this.delivery.group_strategies) args.push(group, strategy);
    this.script<[Array<[string, string, string, Fields]>, number?]>(PUMP_MARKED, args).then(
      ([routed, more]) => {
        for (const [node, sid, , f] of routed) this.claimed.toMember(node, sid, f, 0);
        if (more !== undefined && more !== null) this.pumpMarked(user, more);
      },
      // Not reclaimed if it timed out but ran: which groups it claimed in is unknown here (a
      // RECLAIM of u:USER would take the user's own, claimed by a PUMP in the same millisecond).
      // What it claimed goes again at its ack deadline.
      (err: unknown) => logCommandFailure(this.parts, err, 'pump'),
    );
  }

  // --- acknowledgements and the sweep ----------------------------------------------------------

  /**
   * Settles an ack once the pass over the rings that read it is over (a microtask), in one ACKS
   * script with the acks read beside it. node.ts sends what waits before any other record's
   * script and the sweep before its SWEEP, so each keeps its place among this node's scripts.
   */
  ack(user: string, id: string, reply: AckReply): void {
    if (!this.parts.up()) return reply.unavailable(`ack of ${id} not recorded: Redis is unreachable; the message will be delivered again`);
    this.acks.push({ user, id, reply });
    if (this.acks.length === 1) queueMicrotask(this.flushAcks);
  }

  /** Sends the acks waiting, ACKS_PER_SCRIPT to a script. */
  readonly flushAcks = (): void => {
    if (this.acks.length === 0) return;
    const acks = this.acks;
    this.acks = [];
    for (let i = 0; i < acks.length; i += ACKS_PER_SCRIPT) this.settle(acks.slice(i, i + ACKS_PER_SCRIPT));
  };

  private settle(acks: readonly PendingAck[]): void {
    const args: string[] = [this.prefix];
    for (const { id, user } of acks) args.push(id, user);
    this.script<Array<0 | [string, number]>>(ACKS, args).then(
      (answers) => {
        const blocked = new Set<string>();
        answers.forEach((acked, i) => {
          const { user, id, reply } = acks[i]!;
          if (acked === 0) return reply.unknown(`no message ${id} awaits your ack (unknown, not delivered yet, already acknowledged, or not yours)`);
          // Only now: an ack of someone else's id must not clear what this node tracks of it.
          this.here.acked(id);
          if (acked[1] === 1) blocked.add(user);
          this.parts.stats.acked++;
          // Its delivering node's clock: across hosts as good as their NTP.
          if (Number(acked[0]) > 0) this.parts.latency?.since(Latency.ack, Number(acked[0]));
        });
        for (const user of blocked) this.pump(user);
      },
      (err: unknown) => {
        logCommandFailure(this.parts, err, 'ack');
        // They may have run all the same, freeing room in windows that only the answer would
        // have pumped. One follow-up for all the acks that timed out meanwhile.
        if (timedOut(err)) {
          if (this.pumpDue.size === 0) this.followUps.afterTimeout(() => this.pumpDue.forEach((u) => this.pump(u)), () => this.pumpDue.clear());
          for (const { user } of acks) this.pumpDue.add(user);
        }
        for (const { id, reply } of acks) reply.unavailable(`ack of ${id} not recorded: Redis is unreachable; the message will be delivered again`);
      },
    );
  }

  /**
   * Claims what now fits in `user`'s window, if some of its messages wait for room (PUMP); then
   * offers what room is left to the groups whose `any` messages waited for it (P wg:USER, which
   * PUMP counts), in their turn, until it is full again (PUMP_MARKED).
   */
  pump(user: string): void {
    // One PUMP of a user at a time: those asked for meanwhile are one more, after it (it may
    // have run before what asked for them). A sweep that made 300 of an idle user's messages
    // waiting at once had each ROUTE_USER answer 'pump' (the first set P wb:USER, with nothing
    // in flight), and ran 300 PUMPs where one claimed them all.
    if (this.pumping.has(user)) return void this.pumping.set(user, true);
    this.pumping.set(user, false);
    const done = (): boolean => {
      const again = this.pumping.get(user) === true;
      this.pumping.delete(user);
      return again;
    };
    const now = Date.now();
    const args = [
      this.prefix, user, now, this.delivery.ack_timeout * 1000, this.delivery.backoff_multiplier, this.delivery.max_backoff * 1000,
      this.parts.presence.aliveSince(now), this.delivery.max_inflight_per_user, this.delivery.max_inflight_bytes_per_user, 1, PUMP_CLAIMS,
      claimHoldMs(this.parts.config), this.parts.node, this.routeMarkMs,
    ];
    this.script<[string[], Fields[], number, string[]?] | null>(PUMP, args).then(
      (pumped) => {
        const handOut = (): void => {
          const again = done();
          if (pumped && pumped[1].length > 0) this.claimed.backlogToUser(user, pumped[0], pumped[1]);
          // Having claimed any (and handed them out, above), again: for the rest, and to lift the
          // hold that kept new messages from overtaking these (window-scripts.ts pump()).
          if (again || (pumped && pumped[1].length > 0)) this.pump(user);
          if (pumped && pumped[2] > 0) this.pumpMarked(user, '');
        };
        // Behind what other nodes routed to the user just before, their records not here yet
        // (still pumping meanwhile: no PUMP of the user's overtakes these). Only where the user
        // has connections: elsewhere no record comes to wait for.
        const unseen = pumped && pumped[1].length > 0 && pumped[0].includes(this.parts.node) ? (pumped[3] ?? []).filter((id) => !this.here.handedHere(id)) : [];
        if (unseen.length === 0) handOut();
        else this.claimed.records.wait(unseen, this.routeMarkMs, () => (this.parts.up() ? handOut() : void this.heldForOutage.push(handOut)));
      },
      (err: unknown) => {
        const again = done();
        this.claimFailed(err, 'pump', `u:${user}`, now, '');
        if (again) this.pump(user);
      },
    );
  }

  /**
   * Takes the messages whose time came (any node may; each goes to one) and acts on them. A
   * SWEEP that timed out may have run: the messages it put back to wait would then wait for
   * their recipients' next connection, so what waits for this node's users and groups is looked
   * for again (rescan), once, when Redis answers again.
   */
  async sweep(): Promise<void> {
    const { stats } = this.parts;
    // Acks of this node's clients still unread in its rings go first: their ACKS scripts then reach
    // Redis ahead of this SWEEP (one connection, in order), which would count them missed.
    this.parts.link.catchUp?.();
    this.flushAcks();
    const { max_attempts, ttl, ack_timeout, backoff_multiplier, max_backoff } = this.delivery;
    const { store } = this.parts.config;
    const [due, count, bytes, deadDropped] = await this.script<[Array<[string, string, string, string, number?]>, number, number, number]>(SWEEP, [
      this.prefix, Date.now(), SWEEP_BATCH, max_attempts, ttl * 1000,
      this.parts.node, this.parts.behind() ? this.behindMarkMs : 0, ack_timeout * 1000, backoff_multiplier, max_backoff * 1000,
      store.max_dead_letters, store.max_dead_letter_bytes,
    ]).catch((err: unknown) => {
      if (timedOut(err) && !this.rescanDue) {
        this.rescanDue = true;
        this.followUps.afterTimeout(() => this.rescan(), () => (this.rescanDue = false));
      }
      throw err;
    });
    stats.stored = count;
    stats.stored_bytes = bytes;
    if (deadDropped > 0) this.parts.deadDropped(deadDropped);
    this.here.inflight(); // forgets the deliveries past their deadline
    for (const [id, action, target, freed, deadline] of due) {
      // Held on a node that is behind, or a last attempt whose nodes were not seen alive past its deadline yet: put off, and this node sweeps then.
      if (action === 'later') {
        this.parts.dueAt(deadline!);
        continue;
      }
      // An `any` past its deadline left its holder's window, where messages of its own wait.
      if (freed) this.pump(freed);
      if (action === 'route') this.route(id, target);
      else {
        stats.dead_lettered++;
        if (action === 'expired') stats.expired++;
        // A dead letter frees a place in its user's window (PUMP does nothing when none waits).
        if (action === 'dead' && target.startsWith('u:')) this.pump(target.slice(2));
      }
    }
  }

  // --- helpers ---------------------------------------------------------------------------------

  /** A claiming script (ROUTE_USER, ROUTE_ANY, PUMP, PUMP_GROUP) failed; if it timed out, it may have run. */
  private claimFailed(err: unknown, during: string, target: string, at: number, id: string): void {
    logCommandFailure(this.parts, err, during);
    if (timedOut(err)) this.followUps.claimTimedOut(target, at, id);
  }

  private script<T>(source: string, args: Array<string | number>): Promise<T> {
    return this.parts.scripts.run(source, args) as Promise<T>;
  }
}

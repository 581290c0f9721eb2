/**
 * What a node's connections are handed of their user's messages in Redis: a new connection's
 * backlog (CONNECT and its pages, backlog.ts) in order before what comes for the user
 * meanwhile, and after an outage the rescan's, for every local user: what the connections open
 * through it missed, and all of it for those that opened meanwhile. Apart from messaging.ts (routing, acks, sweeps) because
 * the holds and hand-overs of a connection's backlog are one concern.
 */
import { encodeStoredMsg } from '../protocol/json-codec.js';
import { Backlogs, type Backlog, type BacklogKind } from './backlog.js';
import type { ClaimedDelivery, Fields } from './claimed-delivery.js';
import { outgoing, type LocalDelivery, type Outgoing } from './local-delivery.js';
import type { MessagingParts } from './messaging.js';
import { logCommandFailure } from './redis.js';

export interface ConnectionBacklogParts extends MessagingParts {
  claimed: ClaimedDelivery;
  /** Claims what now fits in the user's window (PUMP), after a backlog that claimed some (it holds the user for this node until then) or left some to claim. */
  pump(user: string): void;
  /** A claiming script timed out: it may have run (timeout-follow-ups.ts). */
  claimTimedOut(target: string, at: number): void;
  /** Runs `again` once Redis answers again, `then` either way, last (timeout-follow-ups.ts). */
  afterTimeout(again: () => void, then: () => void): void;
}

export class ConnectionBacklogs {
  private readonly here: LocalDelivery;
  /** What a user's new connection finds in Redis (CONNECT and its pages). */
  private readonly backlogs: Backlogs;
  /**
   * Connections the rescan is to hand their user's messages in flight, held until then: opened
   * while Redis was out of reach, or their CONNECT failed with it (false: none of it was handed
   * here); open when the node was cut off or forgotten (true: what this node handed out they
   * have, but another node's delivery record sent meanwhile was heard by no one, and a route
   * past presence_ttl left this node out).
   */
  private readonly unlisted = new Map<string, boolean>();
  /**
   * Those a rescan under way took from `unlisted` (with their flag): that rescan releases them
   * when it ends, unless a cut or a forgetting meanwhile (cutOff) gave them to the next rescan.
   * Released by the earlier one, they got what was routed to them after it before what the next
   * one found they had missed (test/cluster-rescan-recut.test.ts).
   */
  private readonly rescanOf = new Map<string, { rescan: object; before: boolean }>();
  /** Connections whose CONNECT failed with the node up, to list their user's messages in flight for once Redis answers (relistLater). */
  private readonly relistDue = new Set<string>();
  /** The drain began or the node stops: it has left the cluster, and writes no presence. */
  private leftCluster = false;

  constructor(private readonly parts: ConnectionBacklogParts) {
    this.here = parts.claimed.here;
    this.backlogs = new Backlogs(parts);
  }

  /**
   * Connection `sid` of `user` authenticated on `shard` (already in the local presence): its
   * presence goes to Redis and, in the same script, what waits for the user comes back (past
   * CONNECT_LISTED in flight, the rest of those in further scripts: backlog.ts); then its
   * `welcome` with that count, then the messages. Without Redis: welcome at once, pending 0.
   * Past max_connections_per_user over every node, `refuse` instead, with the connections the user holds.
   */
  connect(sid: string, user: string, shard: number, refuse: (holding: number) => void): void {
    const { link, local } = this.parts;
    if (!this.parts.up()) {
      // Held from now on, not from its rescan: a route that reaches it between the node's
      // subscriber coming back and the rescan is in flight, and the rescan lists it.
      this.unlisted.set(sid, false);
      this.here.hold(sid, true);
      return link.welcome(shard, sid, 0);
    }
    this.here.hold(sid);
    const wanted = (): boolean => local.bySid.has(sid);
    this.backlogOf(user, local.byUser.get(user)?.size ?? 1, this.parts.config.websocket.limits.max_connections_per_user, wanted).then(
      (backlog) => {
        const held = this.here.release(sid);
        if ('holding' in backlog) return local.bySid.has(sid) ? refuse(backlog.holding) : undefined;
        if (!local.bySid.has(sid)) {
          // Closed meanwhile: CONNECT wrote its presence (after the close's own write, should a
          // script be sent again behind it), so the count is written again; what it claimed goes
          // to the user's other connections; what was in flight stays so and times out. Not once
          // the node left the cluster: its forget ran before this, and the count would stay.
          if (!this.leftCluster) this.parts.presence.userCount(user, local.byUser.get(user)?.size ?? 0).catch((err: unknown) => logCommandFailure(this.parts, err, 'connect'));
          return this.parts.claimed.backlogToUser(user, backlog.nodes, backlog.entries.filter(([claimed]) => claimed === 1).map(([, f]) => f));
        }
        link.welcome(shard, sid, backlog.pending);
        this.handOver(user, backlog, new Map([[sid, held]]));
      },
      (err: unknown) => {
        logCommandFailure(this.parts, err, 'connect');
        if (!local.bySid.has(sid)) return void this.here.release(sid);
        // Failed with the outage: the rescan after it lists what is in flight for it, and it is
        // held until then (what was held for it stays so). Not held while the node is up: what
        // was routed to it while CONNECT ran goes now (it was dropped, and came an ack_timeout
        // or more later, at its deadlines), and what is routed to it from now on at once; what
        // it is handed is kept, and what was in flight before comes once Redis answers
        // (relistLater), without those (until 2026-12-07 it came at its deadlines).
        if (!this.parts.up()) {
          this.unlisted.set(sid, false);
          this.here.hold(sid, true);
          return link.welcome(shard, sid, 0);
        }
        const held = this.here.release(sid);
        link.welcome(shard, sid, 0);
        this.here.track(sid);
        this.here.toSid(sid, held);
        this.presenceOwed(sid, user);
        this.relistLater(sid);
      },
    );
  }

  /**
   * A backlog to the connections `held` names (with what was held for each meanwhile): what was
   * in flight to each, then what was claimed now to every connection of the user, then what was
   * held (what came while CONNECT ran, newer still). A review saw 1001-1500 come before 1-1000
   * on a reconnect when the claimed went first. In queue order (priority, then acceptance), as
   * `batch` frames where several go to one place, as on one process. `openBefore`: those of
   * `held` open before an outage, handed of what was in flight only what this node did not hand out.
   */
  private handOver(user: string, backlog: Backlog, held: ReadonlyMap<string, Outgoing[]>, openBefore: ReadonlySet<string> = new Set()): void {
    const sent = new Set<string>();
    const fresh: Fields[] = [];
    const inFlight: Outgoing[] = [];
    for (const [claimed, f] of backlog.entries) {
      sent.add(f[0]);
      // Newly claimed: for every connection of the user; already in flight: for these too
      // (swept at its deadline here as well: the node that delivered it first may be gone).
      if (claimed === 1) {
        fresh.push(f);
        continue;
      }
      // Acknowledged after it was listed (a rescan's later page ran behind the ack): for no one.
      if (this.here.ackedDuringRescan(f[0])) continue;
      if (f[7] > 0) this.parts.dueAt(f[7]);
      inFlight.push(outgoing(f[0], encodeStoredMsg(f[0], f[1], null, f[3], Number(f[4]), Number(f[5])), f[7], Number(f[4])));
    }
    // Past its deadline (no sweep ran during the outage) the sweep this schedules (dueAt) redelivers it to every connection: not handed now too.
    const now = Date.now();
    // Per connection: a message handed here to some connections only during the hold (a new
    // connection's backlog) is one the held connections lack.
    const missed = (sid: string): Outgoing[] => inFlight.filter(({ id, deadline }) => !this.here.handedTo(id, sid) && !(deadline > 0 && deadline <= now));
    const share = (sid: string): Outgoing[] => {
      // Its CONNECT failed with the node up (relistLater): it lacks what it was not handed since.
      const had = this.here.untrack(sid);
      if (had !== undefined) return inFlight.filter(({ id, deadline }) => !had.has(id) && !(deadline > 0 && deadline <= now));
      return openBefore.has(sid) ? missed(sid) : inFlight;
    };
    // Each connection's share is decided before any goes out: handed to the first, a message
    // would count as handed here for the next ones (a chaos run saw five of six connections lack
    // a third of what was routed during the cuts).
    const shares = [...held.keys()].map((sid) => [sid, share(sid)] as const);
    for (const [sid, mine] of shares) {
      this.here.backlogInFlight(sid, mine);
      this.here.toSid(sid, mine);
    }
    this.parts.claimed.backlogToUser(user, backlog.nodes, fresh);
    for (const [sid, messages] of held) this.here.toSid(sid, messages.filter((message) => !sent.has(message.id)));
  }

  /** Connection `sid` closed: no rescan hands it anything. */
  closed(sid: string): void {
    if (this.unlisted.delete(sid)) this.here.release(sid);
    this.relistDue.delete(sid);
    this.here.untrack(sid);
  }

  /** The drain began: no rescan comes; what was held for connections not listed goes to them now. */
  drained(): void {
    this.leftCluster = true;
    for (const sid of this.unlisted.keys()) this.here.toSid(sid, this.here.release(sid));
    for (const sid of [...this.unlisted.keys(), ...this.relistDue]) this.here.untrack(sid);
    this.unlisted.clear();
    this.relistDue.clear();
  }

  /**
   * The node was cut off from Redis, or found itself forgotten: its open connections are held,
   * for the rescan to hand them what was in flight to their users that this node did not hand
   * out (another node's delivery records sent meanwhile reached no one here), ahead of what
   * comes after. Not while draining: no rescan comes.
   */
  cutOff(): void {
    if (this.leftCluster) return;
    for (const sid of this.parts.local.bySid.keys()) {
      // Awaiting its relisting: the rescan after this does it (still tracked).
      this.relistDue.delete(sid);
      if (this.unlisted.has(sid)) continue;
      // Mid-rescan (still held): the next rescan takes it with that one's flag (false: opened in
      // an outage, and not yet handed what was in flight before).
      const taken = this.rescanOf.get(sid);
      this.rescanOf.delete(sid);
      this.unlisted.set(sid, taken?.before ?? true);
      this.here.hold(sid, true);
    }
  }

  /** The node stops: no presence is written from now on (its farewell forgets the node). */
  stopping(): void {
    this.leftCluster = true;
  }

  /** After an outage: what waited for each local user goes out, and the connections not listed get what is in flight. */
  rescan(): void {
    const rescan = {};
    for (const [user, conns] of this.parts.local.byUser) this.rescanUser(user, conns, rescan);
  }

  /**
   * Once Redis answers (probed as after a timeout), what is in flight to the user of connection
   * `sid`, whose CONNECT failed with the node up, is listed again, and it is handed what it was
   * not handed since (here.track), ahead of what comes during that listing (held): the rescan's
   * path, for its user alone. Once per failed CONNECT: should that fail too with the node up, the rest comes at its
   * deadlines; should the node go down first, the rescan after the outage does it (cutOff).
   */
  private relistLater(sid: string): void {
    if (this.relistDue.size === 0) this.parts.afterTimeout(() => this.relist(), () => this.relistDue.clear());
    this.relistDue.add(sid);
  }

  private relist(): void {
    const { local } = this.parts;
    const users = new Set<string>();
    for (const sid of this.relistDue) {
      const user = local.bySid.get(sid)?.user;
      // Closed meanwhile (closed() dropped it), or taken by a rescan already.
      if (user === undefined || this.leftCluster || this.unlisted.has(sid) || this.rescanOf.has(sid)) continue;
      this.unlisted.set(sid, false);
      this.here.hold(sid, true);
      users.add(user);
    }
    this.relistDue.clear();
    const rescan = {};
    for (const user of users) {
      const conns = local.byUser.get(user);
      if (conns) this.rescanUser(user, conns, rescan);
    }
  }

  private rescanUser(user: string, conns: ReadonlyMap<string, unknown>, rescan: object): void {
    const { local } = this.parts;
    // The connections held for it (cutOff, opened while Redis was out of reach, or relisted)
    // are handed what is in flight to their user that they lack, ahead of what comes
    // meanwhile. A user with none (all opened since, their CONNECT listed it) has only what
    // waits claimed: nothing in flight is read.
    const sids: string[] = [];
    const openBefore = new Set<string>();
    for (const sid of conns.keys()) {
      const before = this.unlisted.get(sid);
      if (before === undefined) continue;
      this.unlisted.delete(sid);
      this.rescanOf.set(sid, { rescan, before });
      sids.push(sid);
      if (before) openBefore.add(sid);
    }
    // Those still this rescan's when it ends (see rescanOf).
    const ours = (): string[] => sids.filter((sid) => this.rescanOf.get(sid)?.rescan === rescan && this.rescanOf.delete(sid));
    const wanted = (): boolean => sids.some((sid) => local.bySid.has(sid));
    // Acks from now until the hand-over are kept: the listing may name what they settle.
    const listing = sids.length > 0;
    if (listing) this.here.rescanning(true);
    this.backlogOf(user, conns.size, 0, wanted, listing ? 'rescan' : 'claim').then(
      (backlog) => {
        const held = new Map(ours().map((sid) => [sid, this.here.release(sid)]));
        // No cap is asked of a rescan (0), so it is never refused.
        if (!('holding' in backlog)) this.handOver(user, backlog, held, openBefore);
      },
      (err: unknown) => {
        // Failed with a new outage: still held, for the next rescan. Failed while the node
        // stays up (a timeout, an error reply): routes reach it from now on, so no later
        // listing may (it would hand them again); what was held goes now, and what was in
        // flight reaches it at its deadlines.
        const down = !this.parts.up();
        for (const sid of ours()) {
          if (down && local.bySid.has(sid)) this.unlisted.set(sid, openBefore.has(sid));
          else {
            this.here.untrack(sid);
            this.here.toSid(sid, this.here.release(sid));
          }
        }
        logCommandFailure(this.parts, err, 'rescan');
      },
    ).finally(() => {
      if (listing) this.here.rescanning(false);
    });
  }

  /**
   * Writes the presence a failed CONNECT may not have (an error before its write: Redis busy with
   * a script): without it no route reaches the user's only connection here, and what waits for
   * the user waited until an outage's rescan. Then claims what waits, as CONNECT would have.
   * Again after a command timeout while it fails with the node up (the resync writes it after
   * an outage); not once the connection closed (its close wrote the count), nor once the node
   * left the cluster: its drain's forget ran, and its closes write nothing, so a count written
   * then named a node no heartbeat forgets again, for good should its farewell not run
   * (test/cluster-presence-owed-drain.test.ts).
   */
  private presenceOwed(sid: string, user: string): void {
    const { local, presence } = this.parts;
    if (!this.parts.up() || this.leftCluster || !local.bySid.has(sid)) return;
    presence.userCount(user, local.byUser.get(user)?.size ?? 0).then(
      () => this.parts.pump(user),
      (err: unknown) => {
        logCommandFailure(this.parts, err, 'connect');
        setTimeout(() => this.presenceOwed(sid, user), this.parts.config.cluster.command_timeout * 1000).unref();
      },
    );
  }

  /** The user's backlog (backlog.ts); what it left to claim is pumped next, so it goes out after the backlog. */
  private async backlogOf(user: string, connections: number, maxConnections: number, wanted: () => boolean, kind: BacklogKind = 'connect'): Promise<Backlog | { holding: number }> {
    const backlog = await this.backlogs.of(user, connections, maxConnections, wanted, kind);
    if ('pumpAfter' in backlog && backlog.pumpAfter) this.parts.pump(user);
    return backlog;
  }
}

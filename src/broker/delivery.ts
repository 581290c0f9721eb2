/**
 * Getting stored messages to their recipients: to every connection of a user, or to the one
 * member of a group an `any` strategy picks; parked when nobody is there (until a recipient
 * comes or delivery.ttl passes); everything waiting for a user when one of its connections
 * authenticates, and for a group when a member joins.
 *
 * A message's data stays on disk while it waits: its `msg` frame is encoded when it is
 * delivered (from the data at hand on a first delivery, else read back from the store) and
 * kept only for that turn (outbox.ts).
 *
 * A user's deliveries awaiting its ack are bounded (delivery.max_inflight_per_user and
 * _bytes_per_user, at least one message): the rest wait in the store, in queue order, and go
 * out as acks free the window (pump). Without it, a user with 500 MB stored made the broker read
 * and encode all of it in one turn at each of its reconnects, stalling every other user for
 * seconds, and most of it was then refused by the full ring and sent again at its ack timeout.
 */
import { epochMs } from '../metrics/clock.js';
import type { AnyStrategy } from '../protocol/frames.js';
import { encodeStoredMsg } from '../protocol/json-codec.js';
import type { MessageStore } from '../store/store.js';
import type { Logger } from '../util/logger.js';
import type { AckTimers } from './ack-timers.js';
import type { BrokerStats } from './broker.js';
import { Outbox } from './outbox.js';
import { ResendBudget } from './resend-budget.js';
import { TurnBudget } from './turn-budget.js';
import { GroupTurns } from './group-turns.js';
import type { Presence } from './presence.js';
import { setState, State, type Entry, type Queues } from './queues.js';
import type { ShardLink } from './shard-link.js';

export interface DeliveryParts {
  link: ShardLink;
  batchSize: number;
  /** Per user: deliveries awaiting its ack at once, and their bytes of data. */
  window: { messages: number; bytes: number };
  /** delivery.ack_timeout, ms: a window's worth of messages in flight goes to a user's new connections per this long. */
  ackTimeoutMs: number;
  store: MessageStore;
  queues: Queues;
  presence: Presence;
  timers: AckTimers;
  counters: BrokerStats;
  log: Logger;
  /** Takes an entry out of memory (queues and timers). */
  unlink(entry: Entry): void;
  /** Moves a stored message to the dead-letter queue (and out of memory). */
  deadLetter(entry: Entry, reason: string): void;
}

/** What pumps deliver per turn, all users together (turn-budget.ts): about 20-25 ms of the broker's time each way. */
const TURN_BYTES = 1024 * 1024;
const TURN_MESSAGES = 2048;

export class Delivery {
  private readonly outbox: Outbox;
  /** Draining before a hand-over (Broker.pauseDelivery): messages wait in the store for the next process. */
  private paused = false;
  private stopped = false;
  /** Users with messages waiting for room in their window (while connected): pump() delivers them in order. */
  private readonly blocked = new Set<string>();
  /** Groups with `any` messages waiting for a member whose user's window has room, in their turns (group-turns.ts). */
  private readonly blockedGroups: GroupTurns;
  /** Users whose window an ack (or a dead letter) freed this turn: pumped once at its end. */
  private readonly freed = new Set<string>();
  /**
   * Users whose window freed this turn while some group was blocked: their groups are looked at
   * once at the turn's end, not at each ack (a user of 100 connections in 1,000 groups each made
   * every ack cost 100,000 look-ups).
   */
  private readonly freedHolders = new Set<string>();
  /** Blocked groups of which a member's window freed this turn. */
  private readonly freedGroups = new Set<string>();
  private pumpQueued = false;
  private readonly resends: ResendBudget;
  /** What backlogs may deliver per turn, all recipients together; those it cut short (`u:USER`, `g:GROUP`) are pumped again in a later turn. */
  private readonly turnBudget = new TurnBudget(TURN_BYTES, TURN_MESSAGES);
  private readonly deferred = new Set<string>();
  private deferredQueued = false;
  /** Whose turn is first when a window frees: the user's own messages or its groups' (alternating, so neither starves the other). */
  private groupsFirst = false;

  constructor(private readonly parts: DeliveryParts) {
    this.outbox = new Outbox(parts.link, parts.batchSize, (entry) => this.encode(entry), (entry, why) => this.undeliverable(entry, why));
    this.resends = new ResendBudget(parts.window.messages, parts.ackTimeoutMs);
    this.blockedGroups = new GroupTurns(parts.presence);
  }

  /** Why `data` (JSON text) is too large to ever be delivered (E_TOO_LARGE), or null. */
  oversize(data: string): string | null {
    return this.outbox.oversize(data);
  }

  /** Delivers `entry` (WAITING) to its recipient, or parks it when nobody is there (or delivery is paused). */
  route(entry: Entry): void {
    if (this.paused) this.park(entry);
    else if (entry.m.group === null) this.toUser(entry);
    else this.toMember(entry);
  }

  /** From now on nothing is delivered: what is routed waits (see Broker.pauseDelivery). */
  pause(): void {
    this.paused = true;
  }

  /** The broker stops: nothing more is delivered, nor read from the store, which is closed next (a pump a turn's budget deferred, a flush queued this turn). */
  stop(): void {
    this.paused = true;
    this.stopped = true;
  }

  /**
   * Messages just loaded for `targets` (`u:USER`, `g:GROUP`; a take-over's: some recipients are
   * connected already): each connected recipient gets what waits for it in queue order, priority
   * first, as its window allows. (Routed one by one in the order they were stored, a user's
   * first window went by age, ahead of newer CRITICAL messages.)
   */
  resume(targets: Iterable<string>): void {
    if (this.paused) return;
    for (const target of targets) {
      if (target.startsWith('g:')) {
        this.pumpGroup(target.slice(2));
      } else if (target.startsWith('u:')) {
        this.blocked.add(target.slice(2));
        this.pump(target.slice(2));
      }
    }
  }

  /**
   * A connection authenticated: welcome it with its pending count, then deliver what waits:
   * what the user already has in flight to this connection too (within its ResendBudget, else
   * none, and nothing newer: all at their ack deadlines), the rest as its window allows.
   */
  online(sid: string, user: string, shard: number): void {
    const { presence, queues, link } = this.parts;
    presence.online(sid, user, shard);
    // What this turn's flush brings to all of the user's connections on its shard: not sent again, it would come twice.
    const coming = this.outbox.queuedToUser(shard, user);
    // Counted, not walked: a walk of a full queue (10,000) cost 0.5-0.8 ms per connection opened.
    const target = `u:${user}`;
    const waiting = queues.count(target, State.WAITING);
    let inflight = queues.count(target, State.INFLIGHT);
    link.welcome(shard, sid, waiting + inflight);
    for (const entry of coming) if (entry.state === State.INFLIGHT && entry.m.target === target && queues.holds(entry)) inflight--;
    if (this.paused) return;
    // Over the budget, none: they come at their deadlines, and what waits stays behind them.
    if (!this.resends.take(user, inflight, Date.now())) return;
    for (const entry of inflight > 0 ? queues.ordered(target) : []) {
      if (entry.state !== State.INFLIGHT || coming.has(entry)) continue;
      this.enqueue(shard, null, sid, entry);
      if (--inflight === 0) break;
    }
    if (waiting === 0) return;
    this.blocked.add(user);
    this.pump(user, { shard, sid });
  }

  /** One of `user`'s deliveries no longer awaits its ack (acknowledged, dead-lettered, moved to another member): what waits for its window goes out at the end of the turn. */
  released(user: string): void {
    if (this.blocked.has(user)) this.freed.add(user);
    if (this.blockedGroups.size > 0) this.freedHolders.add(user);
    if (this.pumpQueued || (this.freed.size === 0 && this.freedHolders.size === 0)) return;
    this.pumpQueued = true;
    setImmediate(() => {
      this.pumpQueued = false;
      this.groupsFirst = !this.groupsFirst;
      if (this.groupsFirst) this.pumpFreedGroups();
      for (const freed of this.freed) this.pump(freed);
      this.freed.clear();
      if (!this.groupsFirst) this.pumpFreedGroups();
    });
  }

  /**
   * The blocked groups a freed window may serve, in their turn: one that got some and is still
   * blocked goes to the back. Only until the freed windows are full again: no other member of
   * a blocked group has room (room comes only through released()), and looking at the rest for
   * nothing made each ack of a user in 30,000 blocked groups cost 50-130 ms.
   */
  private pumpFreedGroups(): void {
    const { timers, window } = this.parts;
    const open = [...this.freedHolders];
    // A window only fills while the turn lasts: one found full stays out.
    const someOpen = (): boolean => {
      while (open.length > 0 && timers.inflightOf(open[open.length - 1]!) >= window.messages) open.pop();
      return open.length > 0;
    };
    // Each user's blocked groups, not all its groups: a user in 30,000 groups walked them all at each ack.
    if (someOpen()) for (const user of this.freedHolders) for (const group of this.parts.presence.markedGroupsOf(user)) this.freedGroups.add(group);
    this.freedHolders.clear();
    if (this.freedGroups.size === 0) return;
    const due = this.blockedGroups.inTurn(this.freedGroups);
    this.freedGroups.clear();
    for (const group of due) {
      if (!someOpen()) return;
      if (this.pumpGroup(group) > 0) this.blockedGroups.toBack(group);
    }
  }

  /** A member joined `group`: messages stored for it while nobody was online go out now, as windows allow. */
  groupJoined(group: string): void {
    this.pumpGroup(group);
  }

  /**
   * The last member of `group` left: it is no longer blocked, its messages wait for a member to
   * join (groupJoined pumps it). Kept, it was never pumped again: a client joining, leaving an
   * `any` waiting and leaving, group after group, grew the set for good.
   */
  groupEmptied(group: string): void {
    this.blockedGroups.unblock(group);
  }

  /** Delivers `group`'s waiting `any` messages in queue order while some member's window has room; how many went. */
  private pumpGroup(group: string): number {
    if (this.paused) return 0;
    const { queues, presence } = this.parts;
    let delivered = 0;
    // Walked, not copied: what is in flight comes first and is skipped, and the walk stops at the
    // first message that fits no member (a copy of a 32,000-message queue cost about 1 ms per pump).
    for (const entry of queues.ordered(`g:${group}`)) {
      if (entry.state !== State.WAITING || !queues.holds(entry)) continue;
      if (!this.turnBudget.take(entry.m.bytes)) {
        // Blocked meanwhile: new messages wait behind what the next turns deliver.
        if (presence.hasMembers(group)) this.blockedGroups.block(group);
        this.defer(`g:${group}`);
        return delivered;
      }
      if (this.deliverToMember(entry)) {
        delivered++;
        continue;
      }
      // Blocked until a window frees; without members, until one joins.
      if (presence.hasMembers(group)) this.blockedGroups.block(group);
      else this.blockedGroups.unblock(group);
      return delivered;
    }
    this.blockedGroups.unblock(group);
    return delivered;
  }

  private toUser(entry: Entry): void {
    const user = entry.m.target.slice(2);
    const conns = this.parts.presence.connectionsOf(user);
    if (!conns || conns.size === 0) return this.park(entry);
    // A redelivery is in the window already; anything else waits its turn behind what waits before it.
    if (entry.state !== State.INFLIGHT && (this.blocked.has(user) || !this.fits(user, entry))) {
      this.blocked.add(user);
      return this.park(entry);
    }
    this.deliverToUser(entry, user);
  }

  /** Whether `entry` fits `user`'s window now. */
  private fits(user: string, entry: Entry): boolean {
    const { timers } = this.parts;
    return this.room(timers.inflightOf(user), timers.inflightBytesOf(user), entry.m.bytes);
  }

  /** Whether a message of `bytes` fits beside `count` in flight holding `inflightBytes`: always when none is (a message larger than the window still goes, alone). */
  private room(count: number, inflightBytes: number, bytes: number): boolean {
    const { window } = this.parts;
    return count === 0 || (count < window.messages && inflightBytes + bytes <= window.bytes);
  }

  /**
   * Delivers `user`'s waiting messages in queue order while its window has room, to `to` (a
   * connection that just came: as before windows, a backlog goes to the connection that found
   * it) or else to all of the user's connections; unblocks the user once none waits.
   */
  private pump(user: string, to: { shard: number; sid: string } | null = null): void {
    if (this.paused || !this.blocked.has(user)) return;
    const conns = this.parts.presence.connectionsOf(user);
    // Offline: they wait for its next connection (online() pumps).
    if (!conns || conns.size === 0) return void this.blocked.delete(user);
    const { timers } = this.parts;
    let count = timers.inflightOf(user);
    let bytes = timers.inflightBytesOf(user);
    const due: Entry[] = [];
    let room = true;
    for (const entry of this.parts.queues.ordered(`u:${user}`)) {
      if (entry.state !== State.WAITING) continue;
      if (!this.room(count, bytes, entry.m.bytes)) {
        room = false;
        break;
      }
      if (!this.turnBudget.take(entry.m.bytes)) {
        room = false;
        this.defer(`u:${user}`);
        break;
      }
      due.push(entry);
      count++;
      bytes += entry.m.bytes;
    }
    // Delivered after the walk, which must not see the queue change under it.
    for (const entry of due) {
      if (to === null) {
        this.deliverToUser(entry, user);
      } else {
        this.markInflight(entry, user);
        this.enqueue(to.shard, null, to.sid, entry);
      }
    }
    if (room) this.blocked.delete(user);
  }

  /** `target`'s pump was cut short by the turn's budget: it goes on in a later turn (still blocked, so new messages wait behind). */
  private defer(target: string): void {
    this.deferred.add(target);
    if (this.deferredQueued) return;
    this.deferredQueued = true;
    setImmediate(() => {
      this.deferredQueued = false;
      const targets = [...this.deferred];
      this.deferred.clear();
      this.resume(targets);
    });
  }

  private deliverToUser(entry: Entry, user: string): void {
    const conns = this.parts.presence.connectionsOf(user)!;
    this.markInflight(entry, user);
    // One DELIVER_USER per shard reaches all of the user's connections there (up to 256 shards: a Set, not a bit mask).
    const shards = new Set<number>();
    for (const conn of conns.values()) {
      if (shards.has(conn.shard)) continue;
      shards.add(conn.shard);
      this.enqueue(conn.shard, user, null, entry);
    }
  }

  private toMember(entry: Entry): void {
    const group = entry.m.group!;
    // A new message waits behind those already waiting for room; a redelivery goes now if it can.
    if ((entry.state === State.INFLIGHT || !this.blockedGroups.has(group)) && this.deliverToMember(entry)) return;
    if (this.parts.presence.hasMembers(group)) this.blockedGroups.block(group);
    this.park(entry);
  }


  /**
   * Delivers `entry` to the member its strategy picks among those whose user's window has room
   * (as for a `send`, an `any` message counts in its holder's window); false, untouched, when none has.
   */
  private deliverToMember(entry: Entry): boolean {
    const { presence, timers } = this.parts;
    const { bytes } = entry.m;
    // A redelivery is in its holder's window already.
    const hasRoom = (member: { user: string }): boolean => member.user === entry.holder || this.room(timers.inflightOf(member.user), timers.inflightBytesOf(member.user), bytes);
    const member = presence.pick(entry.m.group!, entry.m.strategy as AnyStrategy | null, timers.inflightOf, hasRoom);
    if (member === null) return false;
    this.markInflight(entry, member.user);
    this.enqueue(member.shard, null, member.sid, entry);
    return true;
  }

  /** Nobody to deliver to: the message waits, its data on disk only, until a recipient comes or delivery.ttl passes. */
  private park(entry: Entry): void {
    setState(entry, State.WAITING);
    entry.readyAt = 0; // its wait for a recipient is not the server's send latency
    if (entry.storing === null) entry.body = null; // else kept until the commit: the store cannot give it back before
    this.parts.timers.wait(entry);
    this.parts.timers.arm();
  }

  private markInflight(entry: Entry, holder: string): void {
    setState(entry, State.INFLIGHT);
    const attempt = ++entry.m.attempts;
    if (attempt > 1) {
      this.parts.counters.redelivered++;
      // Persist the count from the second delivery on: first deliveries stay write-free. Not
      // retried when it fails: a lost count costs at most extra deliveries after a restart.
      void this.parts.store.putAttempts(entry.m);
    }
    this.parts.timers.hold(entry, holder);
    entry.deliveredAt = epochMs(); // the ack latency starts here
  }

  private enqueue(shard: number, user: string | null, sid: string | null, entry: Entry): void {
    this.parts.counters.delivered++;
    this.outbox.add(shard, user, sid, entry);
  }

  /** The entry's `msg` frame: from its data at hand on a first delivery, else read back from the store. */
  private encode(entry: Entry): string | null {
    const m = entry.m;
    if (!this.parts.queues.has(m.id) || this.stopped) return null; // acknowledged or dead-lettered since it was queued this turn, or the store is closing
    const data = entry.body ?? this.parts.store.body(m);
    // Kept while the commit runs: a redelivery or another connection before it needs it again.
    if (entry.storing === null) entry.body = null;
    if (data === undefined) {
      // Only another process sharing the store (a pm2 reload) could have removed it.
      this.parts.log.error({ code: 'E_INTERNAL', id: m.id, target: m.target }, 'a stored message is no longer in the store; forgotten');
      this.parts.unlink(entry);
      return null;
    }
    return encodeStoredMsg(m.id, m.from, m.group, data, m.pri, m.ts);
  }

  /** A stored message too large to ever deliver (stored before the limit applied, or with a larger ring): dead-lettered, once. */
  private undeliverable(entry: Entry, why: string): void {
    if (!this.parts.queues.has(entry.m.id)) return;
    this.parts.deadLetter(entry, `undeliverable: its ${why}`);
  }
}

/**
 * Taking messages in: a `send`/`any` (from a shard or the embedding API) is refused when it
 * cannot be stored (an `at` too far ahead, an unwritable store, a limit on stored messages),
 * passed through its processor if it has one, stored, acknowledged to its sender once
 * committed, and then handed to delivery (or to the schedule). Also processed `pub`s, and
 * dead letters put back in their queue (requeue).
 *
 * Every sender gets an answer: its id once the message is committed, or a coded refusal.
 */
import type { Config } from '../config/schema.js';
import { epochMs } from '../metrics/clock.js';
import { Latency, type LatencyRecorder } from '../metrics/latencies.js';
import { OcsError, type ErrorCode } from '../protocol/errors.js';
import { encodeGroupMsgJson } from '../protocol/json-codec.js';
import { metaOf, type DeadLetter, type StoredMessage } from '../store/messages.js';
import type { MessageStore } from '../store/store.js';
import type { Logger } from '../util/logger.js';
import type { AckTimers } from './ack-timers.js';
import type { BrokerStats } from './broker.js';
import type { Delivery } from './delivery.js';
import type { History } from './history.js';
import { scheduleRefusal } from './embedding-checks.js';
import type { Incoming, MessageIds } from './ids.js';
import type { Processors } from './processors.js';
import { newEntry, setState, State, type Entry, type Queues } from './queues.js';
import type { ShardLink } from './shard-link.js';
import type { UnsavedWrites } from './unsaved-writes.js';
import { WARN_EVERY_MS, warnEvery } from '../util/tally.js';

/** `offset`: the one a pub to a group that keeps history got. */
export type Reply = { ok(id: string, offset?: number): void; fail(code: ErrorCode, message: string): void };

export interface IntakeParts {
  delivery: Config['websocket']['delivery'];
  store: MessageStore;
  queues: Queues;
  ids: MessageIds;
  processors: Processors;
  timers: AckTimers;
  route: Delivery;
  link: ShardLink;
  /** Where pubs to groups that keep history get their offset (null: none does). */
  history: History | null;
  unsaved: UnsavedWrites;
  counters: BrokerStats;
  log: Logger;
  /** Where the commit latency (received → store commit) is recorded. */
  latency?: LatencyRecorder;
  /** Moves a stored message to the dead-letter queue (and out of memory). */
  deadLetter(entry: Entry, reason: string): void;
  unlink(entry: Entry): void;
}

export class Intake {
  /** Requeues under way, by letter id, until the letter's removal from the dead-letter queue is written. */
  private readonly requeuing = new Map<string, Promise<string>>();
  /** Warned of once per WARN_EVERY_MS, not per message: a client can cause either with each frame it sends. */
  private readonly warnLowDropped: (fields: Record<string, unknown>) => void;
  private readonly warnProcessorFailed: (fields: Record<string, unknown>) => void;

  constructor(private readonly parts: IntakeParts) {
    this.warnLowDropped = warnEvery(parts.log, WARN_EVERY_MS, 'queue full: oldest LOW messages dead-lettered');
    this.warnProcessorFailed = warnEvery(parts.log, WARN_EVERY_MS, 'processor failed; messages dead-lettered');
  }

  /**
   * Refuses what cannot be stored (an `at` too far ahead, an unwritable store), runs the
   * processor for `type` if there is one, then stores and routes the message. `fromClient`:
   * the sender's limit (delivery.max_stored_per_sender) applies. `receivedAt`: when its shard got
   * the frame (epochMs()), for the commit latency; 0 or absent: from now (the embedding API).
   */
  accept(incoming: Incoming, type: string | null, reply: Reply, fromClient: boolean, receivedAt = 0): void {
    if (!(receivedAt > 0)) receivedAt = epochMs();
    const { processors, ids } = this.parts;
    const tooFar = scheduleRefusal(incoming.at, Date.now(), this.parts.delivery.max_schedule_ahead);
    if (tooFar !== null) return reply.fail('E_BAD_FRAME', tooFar);
    if (!this.parts.store.health.writable) return this.refuseUnwritable(reply);
    if (!processors.has(type)) return this.store(incoming, reply, fromClient, receivedAt);
    processors.run(type, incoming, {
      pass: (data, pri) => this.store({ ...incoming, data, pri }, reply, fromClient, receivedAt),
      drop: () => reply.ok(ids.nextPubId()), // accepted, not stored
      fail: (reason) => this.processorFailed(type, reason, incoming, reply),
      abandon: (reason) => reply.fail('E_STORE_UNAVAILABLE', reason),
    });
  }

  /**
   * A `pub` (never stored), after its processor if its data.type has one, to every shard:
   * `reply.ok(id)` once it went out (or was dropped or dead-lettered), `reply.fail` when it
   * cannot fit a ring record. A group that keeps history gives it the next offset first.
   * `receivedAt`: when its shard got the frame (epochMs()), for the pub latency; 0: not a client's.
   */
  publish(id: string, from: string, group: string, data: string, pri: number, type: string | null, reply: Reply, receivedAt = 0): void {
    const send = (dataJson: string, p: number): void => {
      const over = this.parts.route.oversize(dataJson);
      if (over !== null) return reply.fail('E_TOO_LARGE', over);
      const kept = this.parts.history?.append(group, id, from, dataJson, p, Date.now()) ?? null;
      if (kept !== null) {
        this.parts.link.groupPub(group, kept.frame, receivedAt);
        return reply.ok(id, kept.offset);
      }
      this.parts.link.groupPub(group, encodeGroupMsgJson(id, from, group, dataJson, p, Date.now()), receivedAt);
      reply.ok(id);
    };
    if (!this.parts.processors.has(type)) return send(data, pri);
    const incoming: Incoming = { target: `p:${group}`, from, group, data, pri, at: 0, strategy: null };
    this.parts.processors.run(type, incoming, {
      pass: send,
      drop: () => reply.ok(id),
      fail: (reason) => this.processorFailed(type, reason, incoming, reply, id),
      abandon: (reason) => reply.fail('E_STORE_UNAVAILABLE', reason),
    });
  }

  /**
   * Puts a dead letter back in its recipient's queue as a fresh message (attempts 0, new
   * sequence), within the recipient's and the store's limits. The letter leaves the dead-letter
   * queue only once the message is stored again, so a failed write loses nothing.
   */
  requeue(letter: DeadLetter): Promise<string> {
    // A request while one is under way gets its outcome: the message may be held, or delivered
    // and acknowledged while the letter's removal is still being written, and requeuing it
    // again would deliver it twice; or the first one may fail.
    let under = this.requeuing.get(letter.id);
    if (under === undefined) {
      under = this.requeueOnce(letter).finally(() => this.requeuing.delete(letter.id));
      this.requeuing.set(letter.id, under);
    }
    return under;
  }

  private async requeueOnce(letter: DeadLetter): Promise<string> {
    const { store, queues, ids } = this.parts;
    if (queues.has(letter.id)) return letter.id; // requeued already (a second request in flight)
    if (!store.health.writable) throw new OcsError('E_STORE_UNAVAILABLE', this.unwritable('not requeued'));
    const { reason: _reason, failedAt: _failedAt, ...message } = letter;
    // `at` now: delivery.ttl counts from the requeue, after a restart too (restore.ts), not from
    // the first acceptance (ts). A scheduled send dead-lettered before its time keeps its time.
    const now = Date.now();
    const m: StoredMessage = { ...message, seq: ids.nextSeq(), attempts: 0, at: letter.at > now ? letter.at : now };
    const meta = metaOf(m);
    const refusal = queues.admit(m.target, m.from, meta.bytes, false, (low) => this.dropLow(low));
    if (refusal !== null) throw new OcsError('E_QUEUE_FULL', `not requeued: ${refusal}`);
    const entry = newEntry(meta, State.STORING, m.data);
    queues.insert(entry);
    entry.storing = store.put(m);
    const stored = await entry.storing;
    entry.storing = null;
    if (!stored) {
      this.parts.unlink(entry);
      throw new OcsError('E_STORE_UNAVAILABLE', this.unwritable('not requeued'));
    }
    if (queues.holds(entry)) this.scheduleOrRoute(entry, 0);
    // Answered once the letter is gone too (or kept to be removed once the store can write).
    await this.parts.unsaved.write(() => store.removeDead(letter.id));
    return m.id;
  }

  private store(incoming: Incoming, reply: Reply, fromClient: boolean, receivedAt: number): void {
    const { store, queues, ids, counters } = this.parts;
    const over = this.parts.route.oversize(incoming.data);
    if (over !== null) return reply.fail('E_TOO_LARGE', over);
    const m = ids.newMessage(incoming);
    const meta = metaOf(m);
    const refusal = queues.admit(m.target, m.from, meta.bytes, fromClient, (low) => this.dropLow(low));
    if (refusal !== null) {
      counters.queue_full++;
      return reply.fail('E_QUEUE_FULL', refusal);
    }
    const entry = newEntry(meta, State.STORING, m.data);
    queues.insert(entry);
    counters.accepted++;
    const write = (entry.storing = store.put(m, meta.bytes));
    // A message for now goes out at once, while its commit runs (delivery.before_commit): the
    // commit (an fsync with store.sync full) is most of a send's latency, and its tail on a busy
    // disk reaches hundreds of ms. The sender's ack still waits for the commit. Not when the
    // store refused the write already (no room: put() turned it unwritable before returning).
    if (this.parts.delivery.before_commit && !(m.at > Date.now()) && store.health.writable) this.deliverNow(entry, receivedAt);
    this.afterWrite(write, reply, (stored) => {
      entry.storing = null;
      if (!stored) {
        // Out of memory (and out of its holder's in-flight count). A recipient that got it
        // already keeps it, while its sender is told it was not stored (docs/messaging.md).
        this.parts.unlink(entry);
        return this.refuseUnwritable(reply);
      }
      this.parts.latency?.since(Latency.commit, receivedAt);
      reply.ok(m.id);
      if (!queues.has(m.id)) return; // acknowledged (or dead-lettered) before its commit
      if (entry.state !== State.STORING) {
        entry.body = null; // delivered or parked already: from now on the store gives its data back
        return;
      }
      // Held for its commit (before_commit off): its send latency counts from the frame's
      // arrival, as with delivery during the commit. Or its `at` passed during the commit.
      this.scheduleOrRoute(entry, m.at > 0 ? 0 : receivedAt);
    });
  }

  /** A stored entry: scheduled if its `at` is still ahead, else routed now (see deliverNow). */
  private scheduleOrRoute(entry: Entry, receivedAt: number): void {
    if (entry.m.at > Date.now()) {
      setState(entry, State.SCHEDULED);
      entry.body = null;
      this.parts.timers.scheduleAt(entry, entry.m.at);
      this.parts.timers.arm();
    } else {
      this.deliverNow(entry, receivedAt);
    }
  }

  /** Routes `entry` now: to its recipient, or parked. `receivedAt` (epochMs(); 0: none) starts its send latency. */
  private deliverNow(entry: Entry, receivedAt: number): void {
    setState(entry, State.WAITING);
    entry.readyAt = receivedAt;
    this.parts.route.route(entry);
  }

  /**
   * A processor threw, or returned what cannot be JSON: the message goes to the dead-letter queue with the reason; the sender still gets its ack, since the message is stored there.
   * `id`: the one the sender is acknowledged with when it already has one (a processed `pub`), so the letter can be found by it.
   */
  private processorFailed(type: string, reason: string, incoming: Incoming, reply: Reply, id?: string): void {
    this.warnProcessorFailed({ type, reason });
    const m = this.parts.ids.newMessage(incoming, id);
    this.afterWrite(this.parts.store.putDeadLetter({ ...m, reason, failedAt: Date.now() }), reply, (stored) => {
      if (!stored) return this.refuseUnwritable(reply);
      this.parts.counters.dead_lettered++;
      reply.ok(m.id);
    });
  }

  /** Runs `then` with the write's outcome; should it throw (a bug), the sender still gets an answer, E_INTERNAL, and the log says why. */
  private afterWrite(write: Promise<boolean>, reply: Reply, then: (stored: boolean) => void): void {
    const failed = (err: unknown): void => {
      this.parts.log.error({ code: 'E_INTERNAL', err }, 'broker failed after a store write');
      reply.fail('E_INTERNAL', 'the server failed on this message');
    };
    // One reaction per write: a .then(then).catch() chain made two promises per message.
    void write.then((stored) => {
      try {
        then(stored);
      } catch (err) {
        failed(err);
      }
    }, failed);
  }

  /** A full queue makes room by dead-lettering its oldest LOW message. */
  private dropLow(entry: Entry): void {
    const key = entry.m.target;
    this.parts.counters.dropped_low++;
    this.warnLowDropped({ target: key, id: entry.m.id });
    this.parts.deadLetter(entry, `queue full: dropped as the oldest LOW message for ${key.slice(2)} (delivery.max_pending_per_user)`);
  }

  private refuseUnwritable(reply: Reply): void {
    this.parts.counters.store_unavailable++;
    reply.fail('E_STORE_UNAVAILABLE', this.unwritable('message not stored'));
  }

  /** What the sender is told: the store's error itself (paths, errno) is for the log and /health. */
  private unwritable(what: string): string {
    return `${what}: the store cannot write (disk full or I/O error); send and any are refused until it recovers`;
  }
}

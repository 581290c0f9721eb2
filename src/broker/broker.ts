/**
 * The message broker: runs in the primary thread (otherwise idle, and where the embedding API
 * lives). It owns the LMDB store and routes: it accepts `send`/`any` (after processors), stores
 * them, delivers them to the recipient's connections or to one member of the group, and retries
 * or dead-letters what goes unacknowledged or waits too long. Its parts each have a module:
 * intake.ts (accepting, with the refusals), delivery.ts (routing, with outbox.ts batching),
 * queues.ts (per recipient, with the limits on stored messages), presence.ts (who is where),
 * ack-timers.ts (deadlines, schedule and expiry) and deadline-actions.ts (what is done then),
 * processors.ts, dlq-admin.ts (the /admin/dlq API), unsaved-writes.ts (writes made again once a
 * full disk has room), shard-records.ts (what the shards ask, through a ShardLink: ring-link.ts
 * in the server, a recorder in tests).
 *
 * A message is acknowledged to its sender only once its store write is committed: an
 * acknowledged message survives a restart. A message for now is delivered to an online
 * recipient while that commit runs (intake.ts), so its latency is not the disk's: should the
 * commit fail, the recipient may have a message its sender was told is not stored.
 */
import type { Config } from '../config/schema.js';
import { OcsError, type ErrorCode } from '../protocol/errors.js';
import { ANY_STRATEGIES, SERVER_SENDER, type AnyStrategy } from '../protocol/frames.js';
import type { MessageStore, StoreHealth } from '../store/store.js';
import type { Logger } from '../util/logger.js';
import { typeOfData } from '../link/records.js';
import type { LatencyRecorder } from '../metrics/latencies.js';
import { AckTimers } from './ack-timers.js';
import { DeadlineActions } from './deadline-actions.js';
import { Delivery } from './delivery.js';
import type { RenderLetters } from './dlq-admin.js';
import { BrokerGroups } from './groups.js';
import { HistoryHold, HOLD_FULL_MESSAGE } from './history-hold.js';
import type { HistoryStats } from './history.js';
import { checkPublishArgs, checkSendOptions, dataJsonOf } from './embedding-checks.js';
import { Intake, type Reply } from './intake.js';
import { Presence } from './presence.js';
import { MessageIds } from './ids.js';
import { Processors, type Processor } from './processors.js';
import { Queues, type Entry } from './queues.js';
import { restoreStored, UncommittedRemovals } from './restore.js';
import type { ShardLink } from './shard-link.js';
import { ShardRecords } from './shard-records.js';
import { UnsavedWrites } from './unsaved-writes.js';
import { dropWarning } from '../store/dead-letter-bound.js';

export type { Processor, ProcessorMessage } from './processors.js';

export interface SendOptions {
  pri?: number;
  /** Deliver no earlier than this, epoch ms (at most delivery.max_schedule_ahead from now). */
  at?: number;
  /** Shown as `from`; default `@server`. */
  from?: string;
}

export interface BrokerStats {
  accepted: number;
  delivered: number;
  redelivered: number;
  acked: number;
  dead_lettered: number;
  dropped_low: number;
  /** Sends refused with E_QUEUE_FULL (any of the limits on stored messages). */
  queue_full: number;
  /** Messages held now (stored, scheduled, or awaiting an ack). */
  stored: number;
  /** Bytes of data of the messages held now. */
  stored_bytes: number;
  /** Waiting messages dead-lettered after delivery.ttl. */
  expired: number;
  /** Sends refused with E_STORE_UNAVAILABLE. */
  store_unavailable: number;
  /** Dead letters dropped, oldest first, to keep store.max_dead_letters and max_dead_letter_bytes. */
  dead_dropped: number;
}

/** Every counter at 0 (the cluster's node starts from these too: cluster/stats.ts). */
export function newBrokerStats(): BrokerStats {
  return { accepted: 0, delivered: 0, redelivered: 0, acked: 0, dead_lettered: 0, dropped_low: 0, queue_full: 0, stored: 0, stored_bytes: 0, expired: 0, store_unavailable: 0, dead_dropped: 0 };
}

export interface BrokerOptions {
  config: Config;
  store: MessageStore;
  instance: string;
  log: Logger;
  link: ShardLink;
  /** Tell every shard which `data.type` values must detour through the broker. */
  publishProcessorTypes(types: string[]): void;
  /** Where the ack latency (delivered → acknowledged) and the commit latency (received → committed) are recorded. */
  latency?: LatencyRecorder;
  /** The store turned unwritable or writable again (after the broker has logged it). */
  storeHealthChanged?(health: Readonly<StoreHealth>): void;
  /** How a dead-letter page's letters become JSON text (the server sends large chunks to a codec pool); default inline. */
  renderDeadLetters?: RenderLetters;
  /**
   * Whether `shard`'s records to this broker waited in its memory for room in their ring at any
   * time since `since` (epoch ms; now, without it): an ack may be among them, or have been
   * refused for it (E_OVERLOADED). Default: never.
   */
  behind?(shard: number, since?: number): boolean;
}


export class Broker {
  private readonly delivery: Config['websocket']['delivery'];
  private readonly store: MessageStore;
  private readonly link: ShardLink;
  private readonly queues: Queues;
  private readonly presence: Presence;
  private readonly timers: AckTimers;
  private readonly whenDue: DeadlineActions;
  private readonly processors: Processors;
  private readonly ids: MessageIds;
  private readonly unsaved: UnsavedWrites;
  private readonly route: Delivery;
  private readonly intake: Intake;
  private readonly records: ShardRecords;
  /** History, group presence and the answers about groups. */
  private readonly groups: BrokerGroups;
  private stopped = false;
  /** While another process holds the store's lease: what this broker removed, until committed. */
  private standingBy: UncommittedRemovals | null = null;
  /** While adopt() waits for the store: ids removed meanwhile, whose removal may not be committed. */
  private adopting: Set<string> | null = null;
  /** While standing by with history.persist: the history ops held until the store comes (history-hold.ts). */
  private historyHold: HistoryHold | null = null;
  private readonly counters: BrokerStats = newBrokerStats();

  constructor(readonly options: BrokerOptions) {
    const { config, store, log, link } = options;
    this.delivery = config.websocket.delivery;
    this.processors = new Processors(this.delivery.processor_timeout * 1000);
    this.store = store;
    this.link = link;
    this.ids = new MessageIds(options.instance);
    this.queues = new Queues({
      perRecipient: this.delivery.max_pending_per_user,
      perSender: this.delivery.max_stored_per_sender,
      perSenderBytes: this.delivery.max_stored_bytes_per_sender,
      messages: config.store.max_messages,
      bytes: config.store.max_bytes,
    });
    this.groups = new BrokerGroups({ config, store, instance: options.instance, link, log }, (group) => this.presence.hasMembers(group));
    this.presence = new Presence(this.delivery, this.groups.presence, (group) => this.route.groupEmptied(group));
    this.timers = new AckTimers(this.delivery, {
      scheduled: (entry) => this.whenDue.due(entry),
      catchUp: () => link.catchUp?.(),
      unacknowledged: (entry) => this.whenDue.unacknowledged(entry),
      expired: (entry) => this.whenDue.expired(entry),
      // Whatever freed it (an ack, a dead letter, an `any` moved to another member): what waits for the window may go.
      released: (holder) => this.route.released(holder),
    });
    this.unsaved = new UnsavedWrites(config.store.max_messages, log);
    const { queues, presence, timers, counters, unsaved, ids, processors } = this;
    const unlink = (entry: Entry): void => this.unlink(entry);
    const deadLetter = (entry: Entry, reason: string): void => this.deadLetter(entry, reason);
    const window = { messages: this.delivery.max_inflight_per_user, bytes: this.delivery.max_inflight_bytes_per_user };
    this.route = new Delivery({ link, batchSize: config.websocket.performance.batch_size, window, ackTimeoutMs: config.websocket.delivery.ack_timeout * 1000, store, queues, presence, timers, counters, log, unlink, deadLetter });
    this.whenDue = new DeadlineActions({ delivery: this.delivery, queues, presence, timers, route: this.route, counters, behind: options.behind, deadLetter });
    this.intake = new Intake({
      delivery: this.delivery,
      store,
      queues,
      ids,
      processors,
      timers,
      route: this.route,
      link,
      history: this.groups.history,
      unsaved,
      counters,
      log,
      ...(options.latency ? { latency: options.latency } : {}),
      unlink,
      deadLetter,
    });
    this.records = new ShardRecords({ limits: config.websocket.limits, link, store, queues, presence, ids, intake: this.intake, route: this.route, groups: this.groups.requests, unsaved, counters, log, latency: options.latency, renderDeadLetters: options.renderDeadLetters, unlink });
    store.onHealthChange = (health) => this.storeHealthChanged(health);
    store.dead.onDropped = dropWarning(log, config.store);
  }

  /** The counters, with what is stored right now. */
  get stats(): Readonly<BrokerStats> {
    this.counters.stored = this.queues.size;
    this.counters.stored_bytes = this.queues.bytes;
    this.counters.dead_dropped = this.store.dead.dropped;
    return this.counters;
  }

  /**
   * Loads what the store holds (messages survive restarts), then starts listening. Without
   * `loadStored` (another process holds the store's lease: ownership.ts) it delivers only what
   * it accepts itself until takeOver().
   */
  start(options: { loadStored?: boolean } = {}): void {
    if (options.loadStored === false) {
      this.standingBy = new UncommittedRemovals(this.store);
      const waitMs = this.options.config.history.handover_wait * 1000;
      if (this.groups.persistent && waitMs > 0) {
        const keeps = (group: string): boolean => this.groups.keeps(group);
        const userOf = (sid: string): string | undefined => this.presence.userOf(sid);
        this.historyHold = new HistoryHold({ waitMs, log: this.options.log, link: this.link, keeps, userOf, timedOut: () => this.releaseHistory('waited') });
      }
    } else {
      this.load(() => false);
    }
    if (this.historyHold === null) this.groups.start();
    this.link.listen((shard, kind, fields) => this.onRecord(shard, kind, fields));
    this.timers.arm();
  }

  /**
   * The store's lease is ours now: loads what the previous holder left (not what this broker
   * holds or has just removed) and delivers it to recipients already connected. Returns how
   * many messages it loaded; null when it was not standing by (it loaded everything at start).
   */
  takeOver(): number | null {
    const removed = this.standingBy;
    if (removed === null) return null;
    this.standingBy = null;
    removed.stop();
    // History still held: the previous holder's, loaded now with its epochs. Else ours, loaded at start (or when the wait ran out).
    if (this.historyHold !== null) this.releaseHistory('taken over');
    else this.groups.tookOver();
    return this.load((id) => this.queues.has(id) || removed.has(id));
  }

  /**
   * Processes that stood by on the store are gone (ownership.ts): loads what they stored and
   * did not deliver, as a take-over does. Everything this broker removed before is committed
   * first (and what it removes meanwhile is skipped), so no acknowledged message comes back.
   * Resolves with how many it loaded; null when not now: standing by, stopping, `alone()` false,
   * or removals that failed (a full disk) wait to be made again.
   */
  async adopt(alone: () => boolean): Promise<number | null> {
    if (this.standingBy !== null || this.stopped || this.adopting !== null || this.unsaved.size > 0) return null;
    const removed = (this.adopting = new Set());
    try {
      await this.store.flushed();
      // A write chained on one that just committed (a dead letter made once its message is stored) is issued by now.
      await new Promise((resolve) => setImmediate(resolve));
      await this.store.flushed();
    } finally {
      this.adopting = null;
    }
    if (this.standingBy !== null || this.stopped || this.unsaved.size > 0 || !alone()) return null;
    // One that loaded the history (past handover_wait) owns its mark, and left it not clean:
    // ours again, so that our clean stop can mark it clean (a crash still cannot).
    this.groups.tookOver();
    return this.load((id) => this.queues.has(id) || removed.has(id));
  }

  /** Loads the history (the previous holder's when it stopped cleanly, else under new epochs), then handles what was held for it. */
  private releaseHistory(why: 'taken over' | 'waited'): void {
    const hold = this.historyHold;
    if (hold === null) return;
    this.historyHold = null;
    this.groups.start();
    hold.release(why);
  }

  /**
   * The drain before a hand-over: nothing more is delivered (new and due messages wait in the
   * store for the next holder), while sends are still stored and acks still taken, so that the
   * deliveries in flight can be acknowledged before their connections close.
   */
  pauseDelivery(): void {
    this.route.pause();
  }

  private load(skip: (id: string) => boolean): number {
    const { loaded, targets } = restoreStored({ store: this.store, queues: this.queues, ids: this.ids, timers: this.timers }, skip);
    this.route.resume(targets);
    const { size, bytes } = this.queues;
    if (loaded > 0) this.options.log.info({ loaded, stored: size, bytes }, 'broker loaded stored messages');
    const limits = this.options.config.store;
    if (size >= limits.max_messages || bytes >= limits.max_bytes) {
      this.options.log.warn({ stored: size, bytes }, 'the store is over store.max_messages or store.max_bytes: new messages are refused until enough are delivered');
    }
    return loaded;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // Before the link stops: their senders are answered.
    this.processors.stop('the server stopped before the processor for this message answered: not stored, not sent');
    this.standingBy?.stop();
    this.historyHold?.stop();
    this.timers.stop();
    this.route.stop();
    this.link.stop();
    // Standing by, it never held the store: the holder may still write under the epochs it keeps.
    await this.groups.stop(this.standingBy === null);
    await this.store.flushed();
  }

  // --- embedding API ---------------------------------------------------------------------

  /**
   * Stores a direct message for `user`; resolves with its id once stored. Rejects with a
   * TypeError for a bad argument, or an OcsError with the code a client would get
   * (E_BAD_FRAME for an `at` too far ahead or data nested too deep, E_TOO_LARGE, E_QUEUE_FULL, E_STORE_UNAVAILABLE). The sender's
   * limit (delivery.max_stored_per_sender) does not apply: the application is trusted.
   */
  send(user: string, data: unknown, options: SendOptions = {}): Promise<string> {
    return new Promise((resolve, reject) => {
      const { pri, at, from } = checkSendOptions(user, options, SERVER_SENDER);
      const dataJson = dataJsonOf(data);
      if (this.stopped) throw new OcsError('E_STORE_UNAVAILABLE', 'the server has stopped: not stored');
      const reply: Reply = { ok: resolve, fail: (code, message) => reject(new OcsError(code, message)) };
      this.intake.accept({ target: `u:${user}`, from, group: null, data: dataJson, pri, at, strategy: null }, typeOfData(data), reply, false);
    });
  }

  /** Publishes to every online member of `group` (at most once, not stored), like a client `pub`. Throws a TypeError for a bad argument, an OcsError E_TOO_LARGE for data no ring record carries, E_BAD_FRAME for data nested too deep. */
  publish(group: string, data: unknown, options: { pri?: number; from?: string } = {}): string {
    const { pri, from, dataJson } = checkPublishArgs(group, data, options, SERVER_SENDER, (json) => this.route.oversize(json));
    const id = this.ids.nextPubId();
    const dropped = (code: ErrorCode, message: string): void => this.options.log.warn({ code, group }, `publish dropped: ${message}`);
    const publish = (): void => this.intake.publish(id, from, group, dataJson, pri, typeOfData(data), { ok: () => {}, fail: dropped });
    if (this.historyHold !== null && this.groups.keeps(group)) {
      if (!this.historyHold.hold(publish, dataJson.length)) dropped('E_OVERLOADED', HOLD_FULL_MESSAGE);
    } else {
      publish();
    }
    return id;
  }

  setGroupStrategy(group: string, strategy: AnyStrategy): void {
    if (!ANY_STRATEGIES.includes(strategy)) throw new TypeError(`strategy must be one of ${ANY_STRATEGIES.join(', ')}`);
    this.presence.setStrategy(group, strategy);
  }

  registerProcessor(type: string, processor: Processor): void {
    this.processors.register(type, processor);
    this.options.publishProcessorTypes(this.processorTypes());
  }

  processorTypes(): string[] {
    return this.processors.types();
  }

  /** Messages held now (stored, not yet acknowledged or dead-lettered), and how many of them await an ack. */
  depth(): { stored: number; inflight: number } {
    return { stored: this.queues.size, inflight: this.timers.inflightTotal() };
  }

  /** Group history's figures; null when no group keeps history. */
  historyStats(): HistoryStats | null {
    return this.groups.history?.stats ?? null;
  }

  // --- shard records ---------------------------------------------------------------------

  /** A shard died: read what it wrote last, then forget its connections. */
  shardDown(shard: number): void {
    this.link.shardDown(shard);
    this.presence.forgetShard(shard);
  }

  /** One record from `shard` (shard-records.ts), held while the history is handed over (history-hold.ts). */
  onRecord(shard: number, kind: number, f: unknown[]): void {
    if (this.historyHold !== null && this.historyHold.holdsRecord(shard, kind, f, () => this.onRecord(shard, kind, f))) return;
    this.records.onRecord(shard, kind, f);
  }

  // --- dead letters ----------------------------------------------------------------------

  private deadLetter(entry: Entry, reason: string): void {
    const storing = entry.storing;
    this.unlink(entry);
    const m = entry.m;
    const write = (): void => {
      this.counters.dead_lettered++;
      void this.unsaved.write(() => this.store.deadLetter(m, reason));
    };
    // Delivered while its commit runs, and dead-lettered before it ends (an ack deadline shorter
    // than a slow commit): the letter is made from what was stored, once it is; none if it never is.
    if (storing === null) write();
    else void storing.then((stored) => void (stored && write()));
  }

  private unlink(entry: Entry): void {
    this.standingBy?.add(entry.m.id);
    this.adopting?.add(entry.m.id);
    this.timers.release(entry);
    this.queues.remove(entry);
  }

  /** Logs each change once; writes that failed meanwhile are made again once the store can write. */
  private storeHealthChanged(health: Readonly<StoreHealth>): void {
    if (health.writable) {
      this.options.log.info({ failedWrites: health.failedWrites }, 'store writable again: send and any accepted');
      this.unsaved.retry();
    } else {
      this.options.log.error({ code: 'E_STORE_UNAVAILABLE', lastError: health.lastError }, 'store cannot write: send and any refused until it recovers (pub is not affected)');
    }
    this.options.storeHealthChanged?.(health);
  }
}

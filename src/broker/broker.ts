/**
 * The message broker: runs in the primary thread (otherwise idle, and where the embedding API
 * lives). It owns the LMDB store and routes: it accepts `send`/`any` (after processors), stores
 * them, delivers them to the recipient's connections or to one member of the group, and retries
 * or dead-letters what goes unacknowledged. Its parts each have a module: queues.ts (per
 * recipient, with the cap), outbox.ts (batching), presence.ts (who is where), ack-timers.ts
 * (deadlines and schedule), processors.ts, dlq-admin.ts (the /admin/dlq API). Shards are
 * reached through a ShardLink (ring-link.ts in the server, a recorder in tests).
 *
 * A message is acknowledged to its sender only once its store write is committed, and is
 * delivered only after that too: whoever sees a message can rely on it surviving a restart.
 */
import type { Config } from '../config/schema.js';
import type { ErrorCode } from '../protocol/errors.js';
import { ANY_STRATEGIES, NAME_PATTERN, type AnyStrategy } from '../protocol/frames.js';
import { encodeGroupMsgJson } from '../protocol/json-codec.js';
import type { DeadLetter, MessageStore, StoredMessage } from '../store/store.js';
import type { Logger } from '../util/logger.js';
import { ToBroker, typeOfData } from '../link/records.js';
import { epochMs } from '../metrics/clock.js';
import { Latency, type LatencyRecorder } from '../metrics/latencies.js';
import { AckTimers } from './ack-timers.js';
import { answerDlqRequest } from './dlq-admin.js';
import { Outbox } from './outbox.js';
import { Presence } from './presence.js';
import { MessageIds, type Incoming } from './ids.js';
import { Processors, type Processor } from './processors.js';
import { newEntry, Queues, State, type Entry } from './queues.js';
import type { ShardLink } from './shard-link.js';

export type { Processor, ProcessorMessage } from './processors.js';

export interface SendOptions {
  pri?: number;
  /** Deliver no earlier than this, epoch ms. */
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
  queue_full: number;
  stored: number;
}

export interface BrokerOptions {
  config: Config;
  store: MessageStore;
  instance: string;
  log: Logger;
  link: ShardLink;
  /** Tell every shard which `data.type` values must detour through the broker. */
  publishProcessorTypes(types: string[]): void;
  /** Where the ack latency (delivered → acknowledged) is recorded. */
  latency?: LatencyRecorder;
}

const SERVER_SENDER = '@server';

type Reply = { ok(id: string): void; fail(code: ErrorCode, message: string): void };

export class Broker {
  private readonly delivery: Config['websocket']['delivery'];
  private readonly link: ShardLink;
  private readonly queues: Queues;
  private readonly presence: Presence;
  private readonly outbox: Outbox;
  private readonly timers: AckTimers;
  private readonly processors = new Processors();
  private readonly ids: MessageIds;
  private stopped = false;
  readonly stats: BrokerStats = { accepted: 0, delivered: 0, redelivered: 0, acked: 0, dead_lettered: 0, dropped_low: 0, queue_full: 0, stored: 0 };

  constructor(readonly options: BrokerOptions) {
    this.delivery = options.config.websocket.delivery;
    this.link = options.link;
    this.ids = new MessageIds(options.instance);
    this.queues = new Queues(this.delivery.max_pending_per_user);
    this.presence = new Presence(this.delivery);
    this.outbox = new Outbox(this.link, options.config.websocket.performance.batch_size);
    this.timers = new AckTimers(this.delivery, { scheduled: (entry) => this.due(entry), expired: (entry) => this.expired(entry) });
  }

  /** Loads what the store holds (messages survive restarts), then starts listening. */
  start(): void {
    const now = Date.now();
    for (const m of this.options.store.loadQueue()) {
      this.ids.saw(m.seq);
      const entry = newEntry(m, State.WAITING);
      this.queues.insert(entry);
      if (m.at > now) {
        entry.state = State.SCHEDULED;
        this.timers.scheduleAt(entry, m.at);
      }
    }
    this.stats.stored = this.queues.size;
    if (this.queues.size > 0) this.options.log.info({ stored: this.queues.size }, 'broker loaded stored messages');
    this.link.listen((shard, kind, fields) => this.onRecord(shard, kind, fields));
    this.timers.arm();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.timers.stop();
    this.link.stop();
    await this.options.store.flushed();
  }

  // --- embedding API ---------------------------------------------------------------------

  /** Stores a direct message for `user`; resolves with its id once stored. */
  send(user: string, data: unknown, options: SendOptions = {}): Promise<string> {
    return new Promise((resolve, reject) => {
      if (!NAME_PATTERN.test(user)) return reject(new TypeError(`user must match ${NAME_PATTERN.source}`));
      const pri = options.pri ?? 1;
      if (pri !== 0 && pri !== 1 && pri !== 2 && pri !== 3) return reject(new TypeError('pri must be 0, 1, 2 or 3'));
      const dataJson = JSON.stringify(data) ?? 'null';
      this.accept(
        { target: `u:${user}`, from: options.from ?? SERVER_SENDER, group: null, data: dataJson, pri, at: options.at ?? 0, strategy: null },
        typeOfData(data),
        { ok: resolve, fail: (code, message) => reject(Object.assign(new Error(message), { code })) },
      );
    });
  }

  /** Publishes to every online member of `group` (at most once, not stored), like a client `pub`. */
  publish(group: string, data: unknown, options: { pri?: number; from?: string } = {}): string {
    if (!NAME_PATTERN.test(group)) throw new TypeError(`group must match ${NAME_PATTERN.source}`);
    const id = this.ids.nextPubId();
    this.processPub(id, options.from ?? SERVER_SENDER, group, JSON.stringify(data) ?? 'null', options.pri ?? 1, typeOfData(data), () => {});
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

  // --- shard records ---------------------------------------------------------------------

  /** A shard died: read what it wrote last, then forget its connections. */
  shardDown(shard: number): void {
    this.link.shardDown(shard);
    this.presence.forgetShard(shard);
  }

  /** One record from `shard` (fields as src/link/records.ts lists them for ToBroker). */
  onRecord(shard: number, kind: number, f: unknown[]): void {
    try {
      switch (kind) {
        case ToBroker.SEND: {
          const [sid, ref, from, to, data, pri, at, type] = f as [string, string | null, string, string, string, number, number, string | null];
          return this.accept({ target: `u:${to}`, from, group: null, data, pri, at, strategy: null }, type, this.replyTo(shard, sid, ref));
        }
        case ToBroker.ANY: {
          const [sid, ref, from, group, data, pri, strategy, type] = f as [string, string | null, string, string, string, number, string | null, string | null];
          return this.accept({ target: `g:${group}`, from, group, data, pri, at: 0, strategy }, type, this.replyTo(shard, sid, ref));
        }
        case ToBroker.ACK: {
          const [sid, user, id] = f as [string, string, string];
          return this.ack(shard, sid, user, id);
        }
        case ToBroker.PRESENCE: {
          const [sid, user, online] = f as [string, string, number];
          return online ? this.online(sid, user, shard) : this.presence.offline(sid);
        }
        case ToBroker.MEMBERSHIP: {
          const [sid, group, joined, weight] = f as [string, string, number, number];
          if (joined !== 1) return this.presence.leave(sid, group);
          if (this.presence.join(sid, group, weight)) this.deliverWaiting(group);
          return;
        }
        case ToBroker.PUB: {
          const [sid, ref, from, group, data, pri, type] = f as [string, string | null, string, string, string, number, string];
          const id = this.ids.nextPubId();
          return this.processPub(id, from, group, data, pri, type, () => {
            if (ref !== null) this.link.senderAck(shard, sid, ref, id);
          });
        }
        case ToBroker.ADMIN: {
          const [requestId, method, path] = f as [number, string, string];
          const answer = answerDlqRequest(method, path, this.options.store, (letter) => this.requeue(letter));
          return void answer.then(({ status, body }) => this.link.adminReply(shard, requestId, status, JSON.stringify(body)));
        }
      }
    } catch (err) {
      this.options.log.error({ code: 'E_INTERNAL', err, kind, shard }, 'broker record failed');
    }
  }

  private replyTo(shard: number, sid: string, ref: string | null): Reply {
    return {
      ok: (id) => this.link.senderAck(shard, sid, ref, id),
      fail: (code, message) => this.link.error(shard, sid, code, message, ref),
    };
  }

  // --- accepting -------------------------------------------------------------------------

  /** Runs the processor for `type` if there is one, then stores and routes the message. */
  private accept(incoming: Incoming, type: string | null, reply: Reply): void {
    if (!this.processors.has(type)) return this.store(incoming, reply);
    this.processors.run(type, incoming, {
      pass: (data, pri) => this.store({ ...incoming, data, pri }, reply),
      drop: () => reply.ok(this.ids.nextPubId()), // accepted, not stored
      fail: (reason) => this.processorFailed(type, reason, incoming, reply),
    });
  }

  /** A processor threw: the message goes to the dead-letter queue with the reason; the sender still gets its ack, since the message is stored there. */
  private processorFailed(type: string, reason: string, incoming: Incoming, reply: Reply): void {
    this.options.log.warn({ type, reason }, 'processor failed; message dead-lettered');
    const m = this.ids.newMessage(incoming);
    this.stats.dead_lettered++;
    this.options.store.putDeadLetter({ ...m, reason, failedAt: Date.now() }).then(() => reply.ok(m.id), (e: Error) => reply.fail('E_INTERNAL', `not stored: ${e.message}`));
  }

  private store(incoming: Incoming, reply: Reply): void {
    if (!this.queues.admit(incoming.target, (low) => this.dropLow(low))) {
      this.stats.queue_full++;
      return reply.fail('E_QUEUE_FULL', `${incoming.target.slice(2)} has ${this.queues.sizeOf(incoming.target)} stored messages (delivery.max_pending_per_user) and none of them is LOW`);
    }
    const m = this.ids.newMessage(incoming);
    const entry = newEntry(m, State.STORING);
    this.queues.insert(entry);
    this.stats.accepted++;
    this.options.store.put(m).then(
      () => {
        reply.ok(m.id);
        if (!this.queues.has(m.id)) return;
        if (m.at > Date.now()) {
          entry.state = State.SCHEDULED;
          this.timers.scheduleAt(entry, m.at);
          this.timers.arm();
        } else {
          entry.state = State.WAITING;
          entry.readyAt = epochMs();
          this.route(entry);
        }
      },
      (err: Error) => {
        this.unlink(entry);
        this.options.log.error({ code: 'E_INTERNAL', err: err.message }, 'store write failed');
        reply.fail('E_INTERNAL', `message not stored: ${err.message}`);
      },
    );
  }

  /** A full queue makes room by dead-lettering its oldest LOW message. */
  private dropLow(entry: Entry): void {
    const key = entry.m.target;
    this.stats.dropped_low++;
    this.options.log.warn({ target: key, id: entry.m.id }, 'queue full: oldest LOW message dead-lettered');
    this.deadLetter(entry, `queue full: dropped as the oldest LOW message for ${key.slice(2)} (delivery.max_pending_per_user)`);
  }

  // --- routing and delivery --------------------------------------------------------------

  private route(entry: Entry): void {
    if (entry.m.group === null) this.deliverToUser(entry);
    else this.deliverToMember(entry);
  }

  private deliverToUser(entry: Entry): void {
    const user = entry.m.target.slice(2);
    const conns = this.presence.connectionsOf(user);
    if (!conns || conns.size === 0) return this.park(entry);
    this.markInflight(entry, user);
    // One DELIVER_USER per shard reaches all of the user's connections there.
    let shardsSeen = 0;
    for (const conn of conns.values()) {
      const bit = 1 << (conn.shard & 31);
      if (shardsSeen & bit && conn.shard < 32) continue;
      shardsSeen |= bit;
      this.enqueue(conn.shard, user, null, entry);
    }
  }

  private deliverToMember(entry: Entry): void {
    const member = this.presence.pick(entry.m.group!, entry.m.strategy as AnyStrategy | null, this.timers.inflightOf);
    if (member === null) return this.park(entry);
    this.markInflight(entry, member.user);
    this.enqueue(member.shard, null, member.sid, entry);
  }

  private park(entry: Entry): void {
    this.timers.release(entry);
    entry.state = State.WAITING;
    entry.readyAt = 0; // its wait for a recipient is not the server's send latency
  }

  private markInflight(entry: Entry, holder: string): void {
    entry.state = State.INFLIGHT;
    const attempt = ++entry.m.attempts;
    if (attempt > 1) {
      this.stats.redelivered++;
      // Persist the count from the second delivery on: first deliveries stay write-free.
      void this.options.store.put(entry.m);
    }
    this.timers.hold(entry, holder);
  }

  private enqueue(shard: number, user: string | null, sid: string | null, entry: Entry): void {
    this.stats.delivered++;
    this.outbox.add(shard, user, sid, entry);
  }

  /** A connection authenticated: welcome it with its pending count, then deliver what waits. */
  private online(sid: string, user: string, shard: number): void {
    this.presence.online(sid, user, shard);
    const ready = this.queues.inOrder(`u:${user}`).filter((entry) => entry.state === State.WAITING || entry.state === State.INFLIGHT);
    this.link.welcome(shard, sid, ready.length);
    for (const entry of ready) {
      // Waiting messages become deliveries; ones already awaiting an ack go to this connection too.
      if (entry.state === State.WAITING) this.markInflight(entry, user);
      this.enqueue(shard, null, sid, entry);
    }
  }

  /** A member joined `group`: messages stored for it while nobody was online go out now. */
  private deliverWaiting(group: string): void {
    for (const entry of this.queues.inOrder(`g:${group}`)) if (entry.state === State.WAITING) this.deliverToMember(entry);
  }

  // --- acks and timers -------------------------------------------------------------------

  private ack(shard: number, sid: string, user: string, id: string): void {
    const entry = this.queues.get(id);
    const mine = entry !== undefined && entry.state !== State.STORING && (entry.m.group === null ? entry.m.target === `u:${user}` : entry.holder === user);
    if (!mine) return this.link.error(shard, sid, 'E_UNKNOWN_ID', `no message ${id} awaits your ack (unknown, already acknowledged, or not yours)`, null);
    this.stats.acked++;
    this.options.latency?.since(Latency.ack, entry.deliveredAt);
    this.unlink(entry);
    void this.options.store.remove(entry.m);
  }

  /** A scheduled send is due (unless it was removed meanwhile, e.g. dead-lettered by the cap). */
  private due(entry: Entry): void {
    if (entry.state !== State.SCHEDULED || !this.queues.has(entry.m.id)) return;
    entry.state = State.WAITING;
    this.route(entry);
  }

  /** No ack by the deadline: deliver again, or dead-letter after max_attempts. */
  private expired(entry: Entry): void {
    if (entry.state !== State.INFLIGHT || !this.queues.has(entry.m.id)) return;
    if (entry.m.attempts >= this.delivery.max_attempts) {
      this.deadLetter(entry, `not acknowledged after ${entry.m.attempts} deliveries (delivery.max_attempts)`);
    } else {
      this.route(entry);
    }
  }

  private deadLetter(entry: Entry, reason: string): void {
    this.stats.dead_lettered++;
    this.unlink(entry);
    void this.options.store.deadLetter(entry.m, reason);
  }

  private unlink(entry: Entry): void {
    this.timers.release(entry);
    this.queues.remove(entry);
  }

  // --- processed publishes and requeues --------------------------------------------------

  private processPub(id: string, from: string, group: string, data: string, pri: number, type: string | null, acked: () => void): void {
    const send = (dataJson: string, p: number): void => {
      this.link.groupPub(group, encodeGroupMsgJson(id, from, group, dataJson, p, Date.now()));
      acked();
    };
    if (!this.processors.has(type)) return send(data, pri);
    const incoming: Incoming = { target: `p:${group}`, from, group, data, pri, at: 0, strategy: null };
    this.processors.run(type, incoming, { pass: send, drop: acked, fail: (reason) => this.processorFailed(type, reason, incoming, { ok: acked, fail: acked }) });
  }

  /** Puts a dead letter back in its recipient's queue as a fresh message (attempts 0, new sequence). */
  private async requeue(letter: DeadLetter): Promise<string> {
    if (letter.target.startsWith('p:')) throw new Error('a dead-lettered pub cannot be requeued: pubs are not stored');
    const { reason: _reason, failedAt: _failedAt, ...message } = letter;
    const m: StoredMessage = { ...message, seq: this.ids.nextSeq(), attempts: 0, at: 0 };
    const entry = newEntry(m, State.STORING);
    this.queues.insert(entry);
    void this.options.store.removeDead(letter.id);
    await this.options.store.put(m);
    entry.state = State.WAITING;
    this.route(entry);
    return m.id;
  }
}

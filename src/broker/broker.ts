/**
 * The message broker: runs in the primary thread (otherwise idle, and where the embedding API
 * lives). It owns the LMDB store, the per-recipient queues, deliveries awaiting `ack`, retry
 * deadlines with exponential backoff, the schedule, the dead-letter queue, processors, and
 * presence: which users are connected on which shard and which connections are in which
 * groups (for `any`). Shards talk to it over one SPSC ring each way (wire.ts).
 *
 * A message is acknowledged to its sender only once its store write is committed, and is
 * delivered only after that too: whoever sees a message can rely on it surviving a restart.
 */
import { DoorbellListener, DoorbellRinger } from '../rings/doorbell.js';
import type { Config } from '../config/schema.js';
import type { ErrorCode } from '../protocol/errors.js';
import { ANY_STRATEGIES, NAME_PATTERN, type AnyStrategy } from '../protocol/frames.js';
import { encodeBatch, encodeGroupMsgJson, encodeStoredMsg } from '../protocol/json-codec.js';
import type { DeadLetter, MessageStore, StoredMessage } from '../store/store.js';
import type { Logger } from '../util/logger.js';
import { GroupMembers, type Member } from './any-strategies.js';
import { DeadlineLists, type Timed } from './deadlines.js';
import { TimerHeap } from './heap.js';
import { LinkReader } from '../link/reader.js';
import { QueuedRingWriter } from '../link/queued-writer.js';
import { encodeRecord, ToBroker, ToShard, typeOfData } from '../link/records.js';

const enum State {
  /** Written to the store, commit not yet confirmed: invisible to recipients. */
  STORING,
  /** Stored with a future `at`. */
  SCHEDULED,
  /** Stored, waiting for a recipient (offline user, `any` group without members). */
  WAITING,
  /** Delivered, awaiting `ack` until its deadline. */
  INFLIGHT,
}

interface Entry extends Timed {
  m: StoredMessage;
  state: State;
  /** INFLIGHT: the user whose in-flight count includes this entry. */
  holder: string | null;
  /** The encoded msg frame, built on first delivery. */
  frame: string | null;
}

interface Target {
  /** One ordered map per priority (index = pri); insertion order is acceptance order. */
  lanes: [Map<string, Entry>, Map<string, Entry>, Map<string, Entry>, Map<string, Entry>];
  size: number;
}

interface Conn extends Member {
  shard: number;
  groups: Set<string>;
}

/** What a processor sees, and may return changed; `null` drops the message. */
export interface ProcessorMessage {
  kind: 'pub' | 'send' | 'any';
  from: string;
  /** `send`: the recipient. */
  to?: string;
  /** `pub` and `any`: the group. */
  group?: string;
  data: unknown;
  pri: number;
}
export type Processor = (message: ProcessorMessage) => ProcessorMessage | null | undefined | Promise<ProcessorMessage | null | undefined>;

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
  shards: number;
  instance: string;
  log: Logger;
  doorbells: SharedArrayBuffer;
  /** fromShard[i]: ring shard i -> broker; toShard[i]: broker -> shard i. */
  fromShard: SharedArrayBuffer[];
  toShard: SharedArrayBuffer[];
  /** Tell every shard which `data.type` values must detour through the broker. */
  publishProcessorTypes(types: string[]): void;
}

const DRAIN_BUDGET = 4096;
const SERVER_SENDER = '@server';
const DEFAULT_LIST_LIMIT = 100;

type Reply = { ok(id: string): void; fail(code: ErrorCode, message: string): void };

interface Incoming {
  target: string;
  from: string;
  group: string | null;
  data: string;
  pri: number;
  at: number;
  strategy: string | null;
}

export class Broker {
  private readonly delivery: Config['websocket']['delivery'];
  private readonly batchSize: number;
  private readonly readers: LinkReader[];
  private readonly writers: QueuedRingWriter[];
  private readonly listener: DoorbellListener;
  private readonly targets = new Map<string, Target>();
  private readonly byId = new Map<string, Entry>();
  private readonly conns = new Map<string, Conn>();
  private readonly users = new Map<string, Map<string, Conn>>();
  private readonly groups = new Map<string, GroupMembers<Conn>>();
  private readonly groupStrategies = new Map<string, AnyStrategy>();
  private readonly inflight = new Map<string, number>();
  private readonly deadlines = new DeadlineLists<Entry>();
  private readonly schedule = new TimerHeap<Entry>();
  private readonly processors = new Map<string, Processor>();
  /** Per shard, per delivery key (`u:USER` / `s:SID`): entries ready this tick, sent as batches. */
  private readonly outbox = new Map<string, { shard: number; user: string | null; sid: string | null; entries: Entry[] }>();
  private flushQueued = false;
  /** Armed for the next ack deadline or scheduled send; none while nothing waits. */
  private timer: NodeJS.Timeout | null = null;
  private wakeAt = Infinity;
  private readonly tickMs: number;
  private lastSeq = 0;
  private pubSeq = 0;
  private stopped = false;
  readonly stats: BrokerStats = { accepted: 0, delivered: 0, redelivered: 0, acked: 0, dead_lettered: 0, dropped_low: 0, queue_full: 0, stored: 0 };
  private readonly inflightOf = (user: string): number => this.inflight.get(user) ?? 0;

  constructor(readonly options: BrokerOptions) {
    const { config } = options;
    this.delivery = config.websocket.delivery;
    this.batchSize = config.websocket.performance.batch_size;
    this.tickMs = Math.max(5, Math.min(50, (this.delivery.ack_timeout * 1000) / 4));
    for (const [group, strategy] of Object.entries(this.delivery.group_strategies)) this.groupStrategies.set(group, strategy);
    const ringer = new DoorbellRinger(options.doorbells);
    this.writers = options.toShard.map((buffer, shard) => new QueuedRingWriter(buffer, ringer, shard));
    this.readers = options.fromShard.map((buffer, shard) => new LinkReader(buffer, (kind, fields) => this.onRecord(shard, kind, fields), false));
    this.listener = new DoorbellListener(options.doorbells, options.shards, () => this.drain());
  }

  /** Loads what the store holds (messages survive restarts), then starts listening. */
  start(): void {
    const now = Date.now();
    for (const m of this.options.store.loadQueue()) {
      if (m.seq > this.lastSeq) this.lastSeq = m.seq;
      const entry = newEntry(m, State.WAITING);
      this.insert(entry);
      if (m.at > now) {
        entry.state = State.SCHEDULED;
        this.schedule.push(m.at, entry, 0);
      }
    }
    this.stats.stored = this.byId.size;
    if (this.byId.size > 0) this.options.log.info({ stored: this.byId.size }, 'broker loaded stored messages');
    this.listener.start();
    this.armTimer();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.listener.stop();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const writer of this.writers) writer.stop();
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
    const id = this.nextPubId();
    this.processPub(id, options.from ?? SERVER_SENDER, group, JSON.stringify(data) ?? 'null', options.pri ?? 1, typeOfData(data), () => {});
    return id;
  }

  setGroupStrategy(group: string, strategy: AnyStrategy): void {
    if (!ANY_STRATEGIES.includes(strategy)) throw new TypeError(`strategy must be one of ${ANY_STRATEGIES.join(', ')}`);
    this.groupStrategies.set(group, strategy);
  }

  registerProcessor(type: string, processor: Processor): void {
    this.processors.set(type, processor);
    this.options.publishProcessorTypes(this.processorTypes());
  }

  processorTypes(): string[] {
    return [...this.processors.keys()];
  }

  // --- shard records ---------------------------------------------------------------------

  private drain(): boolean {
    let budget = DRAIN_BUDGET;
    for (const reader of this.readers) {
      budget -= reader.drain(budget);
      if (budget <= 0) return true;
    }
    return false;
  }

  /** A shard died: read what it wrote last, then forget its connections. */
  shardDown(shard: number): void {
    this.readers[shard]!.drain(Number.MAX_SAFE_INTEGER);
    this.writers[shard]!.discard();
    for (const conn of [...this.conns.values()]) if (conn.shard === shard) this.offline(conn.sid);
  }

  private onRecord(shard: number, kind: number, f: unknown[]): void {
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
          if (online) this.online({ sid, user, shard, weight: 1, groups: new Set() });
          else this.offline(sid);
          return;
        }
        case ToBroker.MEMBERSHIP: {
          const [sid, group, joined, weight] = f as [string, string, number, number];
          return this.membership(sid, group, joined === 1, weight);
        }
        case ToBroker.PUB: {
          const [sid, ref, from, group, data, pri, type] = f as [string, string | null, string, string, string, number, string];
          const id = this.nextPubId();
          return this.processPub(id, from, group, data, pri, type, () => {
            if (ref !== null) this.writers[shard]!.write(encodeRecord(ToShard.SENDER_ACK, [sid, ref, id]));
          });
        }
        case ToBroker.ADMIN: {
          const [requestId, method, path] = f as [number, string, string];
          void this.admin(method, path).then(({ status, body }) => {
            this.writers[shard]!.write(encodeRecord(ToShard.ADMIN_REPLY, [requestId, status, JSON.stringify(body)]));
          });
          return;
        }
      }
    } catch (err) {
      this.options.log.error({ code: 'E_INTERNAL', err, kind, shard }, 'broker record failed');
    }
  }

  private replyTo(shard: number, sid: string, ref: string | null): Reply {
    const writer = this.writers[shard]!;
    return {
      ok: (id) => writer.write(encodeRecord(ToShard.SENDER_ACK, [sid, ref, id])),
      fail: (code, message) => writer.write(encodeRecord(ToShard.ERROR, [sid, code, message, ref])),
    };
  }

  // --- accepting -------------------------------------------------------------------------

  /** Runs the processor for `type` if there is one, then stores and routes the message. */
  private accept(incoming: Incoming, type: string | null, reply: Reply): void {
    const processor = type === null ? undefined : this.processors.get(type);
    if (processor === undefined) return this.store(incoming, reply);
    const isAny = incoming.target.startsWith('g:');
    const message: ProcessorMessage = {
      kind: isAny ? 'any' : 'send',
      from: incoming.from,
      ...(isAny ? { group: incoming.group! } : { to: incoming.target.slice(2) }),
      data: JSON.parse(incoming.data),
      pri: incoming.pri,
    };
    this.runProcessor(type!, processor, message, incoming, (result) => {
      if (result === null) return reply.ok(this.nextPubId()); // dropped by the processor: accepted, not stored
      this.store({ ...incoming, data: JSON.stringify(result.data) ?? 'null', pri: clampPri(result.pri) }, reply);
    }, reply);
  }

  /**
   * Calls a processor (sync or async). A throw sends the message to the dead-letter queue
   * with the reason; the sender still gets its ack, since the message is stored there.
   */
  private runProcessor(type: string, processor: Processor, message: ProcessorMessage, incoming: Incoming, done: (result: ProcessorMessage | null) => void, reply: Reply): void {
    const fail = (err: unknown): void => {
      const reason = `processor for type ${JSON.stringify(type)} threw: ${err instanceof Error ? err.message : String(err)}`;
      this.options.log.warn({ type, reason }, 'processor failed; message dead-lettered');
      const m = this.newMessage(incoming);
      this.stats.dead_lettered++;
      this.options.store.putDeadLetter({ ...m, reason, failedAt: Date.now() }).then(() => reply.ok(m.id), (e: Error) => reply.fail('E_INTERNAL', `not stored: ${e.message}`));
    };
    let out;
    try {
      out = processor(message);
    } catch (err) {
      return fail(err);
    }
    const finish = (result: ProcessorMessage | null | undefined): void => done(result === undefined ? message : result);
    if (out instanceof Promise) out.then(finish, fail);
    else finish(out);
  }

  private newMessage(incoming: Incoming): StoredMessage {
    const seq = (this.lastSeq = Math.max(this.lastSeq + 1, Date.now() * 1000));
    return {
      id: `${this.options.instance}-${seq.toString(36)}`,
      seq,
      target: incoming.target,
      from: incoming.from,
      group: incoming.group,
      data: incoming.data,
      pri: incoming.pri,
      ts: Date.now(),
      at: incoming.at,
      attempts: 0,
      strategy: incoming.strategy,
    };
  }

  private store(incoming: Incoming, reply: Reply): void {
    const target = this.targets.get(incoming.target);
    if (target && target.size >= this.delivery.max_pending_per_user && !this.dropOldestLow(target, incoming.target)) {
      this.stats.queue_full++;
      return reply.fail('E_QUEUE_FULL', `${incoming.target.slice(2)} has ${target.size} stored messages (delivery.max_pending_per_user) and none of them is LOW`);
    }
    const m = this.newMessage(incoming);
    const entry = newEntry(m, State.STORING);
    this.insert(entry);
    this.stats.accepted++;
    this.options.store.put(m).then(
      () => {
        reply.ok(m.id);
        if (!this.byId.has(m.id)) return;
        if (m.at > Date.now()) {
          entry.state = State.SCHEDULED;
          this.schedule.push(m.at, entry, 0);
          this.armTimer();
        } else {
          entry.state = State.WAITING;
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

  /** A full queue makes room by dead-lettering its oldest LOW message; false when it has none. */
  private dropOldestLow(target: Target, key: string): boolean {
    for (const entry of target.lanes[0].values()) {
      if (entry.state === State.STORING) continue;
      this.stats.dropped_low++;
      this.options.log.warn({ target: key, id: entry.m.id }, 'queue full: oldest LOW message dead-lettered');
      this.deadLetter(entry, `queue full: dropped as the oldest LOW message for ${key.slice(2)} (delivery.max_pending_per_user)`);
      return true;
    }
    return false;
  }

  // --- routing and delivery --------------------------------------------------------------

  private route(entry: Entry): void {
    if (entry.m.group === null) this.deliverToUser(entry);
    else this.deliverToMember(entry);
  }

  private deliverToUser(entry: Entry): void {
    const user = entry.m.target.slice(2);
    const conns = this.users.get(user);
    if (!conns || conns.size === 0) return this.park(entry);
    this.markInflight(entry, user);
    let shardsSeen = 0;
    for (const conn of conns.values()) {
      const bit = 1 << (conn.shard & 31);
      if (shardsSeen & bit && conn.shard < 32) continue;
      shardsSeen |= bit;
      this.enqueue(conn.shard, user, null, entry);
    }
  }

  private deliverToMember(entry: Entry): void {
    const group = entry.m.group!;
    const members = this.groups.get(group);
    const strategy = (entry.m.strategy as AnyStrategy | null) ?? this.groupStrategies.get(group) ?? this.delivery.default_strategy;
    const member = members?.pick(strategy, this.inflightOf) ?? null;
    if (member === null) return this.park(entry);
    this.markInflight(entry, member.user);
    this.enqueue(member.shard, null, member.sid, entry);
  }

  private park(entry: Entry): void {
    this.releaseHolder(entry);
    entry.state = State.WAITING;
  }

  private markInflight(entry: Entry, holder: string): void {
    this.releaseHolder(entry);
    entry.state = State.INFLIGHT;
    entry.holder = holder;
    this.inflight.set(holder, (this.inflight.get(holder) ?? 0) + 1);
    const attempt = ++entry.m.attempts;
    if (attempt > 1) {
      this.stats.redelivered++;
      // Persist the count from the second delivery on: first deliveries stay write-free.
      void this.options.store.put(entry.m);
    }
    // Attempts past the cap all wait max_backoff: they share the cap's list, which stays in order.
    const wait = Math.min(this.delivery.max_backoff, this.delivery.ack_timeout * this.delivery.backoff_multiplier ** (attempt - 1));
    this.deadlines.add(entry, wait === this.delivery.max_backoff ? this.capList() : attempt - 1, Date.now() + wait * 1000);
    this.armTimer();
  }

  /**
   * Sleeps until the next ack deadline or scheduled send, and not at all while none waits (no
   * polling while idle). Wake times are rounded up to tickMs, so a burst of deadlines costs one
   * timer per tick rather than one each, and nothing is handled early.
   */
  private armTimer(): void {
    if (this.stopped) return;
    const next = Math.min(this.schedule.nextTime(), this.deadlines.nextDeadline());
    if (next === Infinity) return;
    const wakeAt = Math.ceil(next / this.tickMs) * this.tickMs;
    if (this.timer !== null && wakeAt >= this.wakeAt) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.wakeAt = wakeAt;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.wakeAt = Infinity;
      this.tick();
      this.armTimer();
    }, Math.max(0, wakeAt - Date.now()));
  }

  /** Index of the deadline list for waits capped at max_backoff (after every uncapped attempt's list). */
  private capList(): number {
    return this.delivery.max_attempts;
  }

  private releaseHolder(entry: Entry): void {
    this.deadlines.remove(entry);
    if (entry.holder === null) return;
    const left = (this.inflight.get(entry.holder) ?? 1) - 1;
    if (left <= 0) this.inflight.delete(entry.holder);
    else this.inflight.set(entry.holder, left);
    entry.holder = null;
  }

  /**
   * Queues a delivery for the end of this tick, so that messages ready together for one
   * connection leave as `batch` frames. CRITICAL is never held: it leaves at once.
   */
  private enqueue(shard: number, user: string | null, sid: string | null, entry: Entry): void {
    this.stats.delivered++;
    if (entry.m.pri === 3) return this.writeDeliver(shard, user, sid, frameOf(entry));
    const key = `${shard}|${user ?? ''}|${sid ?? ''}`;
    let slot = this.outbox.get(key);
    if (!slot) this.outbox.set(key, (slot = { shard, user, sid, entries: [] }));
    slot.entries.push(entry);
    if (!this.flushQueued) {
      this.flushQueued = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushQueued = false;
    for (const slot of this.outbox.values()) {
      const entries = slot.entries;
      // Priority high to low, then acceptance order.
      if (entries.length > 1) entries.sort((a, b) => b.m.pri - a.m.pri || a.m.seq - b.m.seq);
      for (let i = 0; i < entries.length; i += this.batchSize) {
        const chunk = entries.slice(i, i + this.batchSize);
        const frame = chunk.length === 1 ? frameOf(chunk[0]!) : encodeBatch(chunk.map(frameOf));
        this.writeDeliver(slot.shard, slot.user, slot.sid, frame);
      }
    }
    this.outbox.clear();
  }

  private writeDeliver(shard: number, user: string | null, sid: string | null, frame: string): void {
    const record = user !== null ? encodeRecord(ToShard.DELIVER_USER, [user, frame]) : encodeRecord(ToShard.DELIVER_SID, [sid, frame]);
    this.writers[shard]!.write(record);
  }

  // --- acks, deadlines, schedule ---------------------------------------------------------

  private ack(shard: number, sid: string, user: string, id: string): void {
    const entry = this.byId.get(id);
    const mine = entry !== undefined && entry.state !== State.STORING && (entry.m.group === null ? entry.m.target === `u:${user}` : entry.holder === user);
    if (!mine) {
      this.writers[shard]!.write(encodeRecord(ToShard.ERROR, [sid, 'E_UNKNOWN_ID', `no message ${id} awaits your ack (unknown, already acknowledged, or not yours)`, null]));
      return;
    }
    this.stats.acked++;
    this.unlink(entry);
    void this.options.store.remove(entry.m);
  }

  private tick(): void {
    const now = Date.now();
    for (let due = this.schedule.popDue(now); due; due = this.schedule.popDue(now)) {
      const entry = due.item;
      if (entry.state !== State.SCHEDULED || !this.byId.has(entry.m.id)) continue;
      entry.state = State.WAITING;
      this.route(entry);
    }
    for (const entry of this.deadlines.takeDue(now)) {
      if (entry.state !== State.INFLIGHT || !this.byId.has(entry.m.id)) continue;
      if (entry.m.attempts >= this.delivery.max_attempts) {
        this.deadLetter(entry, `not acknowledged after ${entry.m.attempts} deliveries (delivery.max_attempts)`);
      } else {
        this.route(entry);
      }
    }
  }

  private deadLetter(entry: Entry, reason: string): void {
    this.stats.dead_lettered++;
    this.unlink(entry);
    void this.options.store.deadLetter(entry.m, reason);
  }

  // --- presence ----------------------------------------------------------------------------

  /** A connection authenticated: welcome it with its pending count, then deliver what waits. */
  private online(conn: Conn): void {
    this.conns.set(conn.sid, conn);
    let conns = this.users.get(conn.user);
    if (!conns) this.users.set(conn.user, (conns = new Map()));
    conns.set(conn.sid, conn);
    conn.weight = this.delivery.weights[conn.user] ?? 1;
    const target = this.targets.get(`u:${conn.user}`);
    const ready: Entry[] = [];
    if (target) {
      for (let pri = 3; pri >= 0; pri--) {
        for (const entry of target.lanes[pri]!.values()) if (entry.state === State.WAITING || entry.state === State.INFLIGHT) ready.push(entry);
      }
    }
    this.writers[conn.shard]!.write(encodeRecord(ToShard.WELCOME, [conn.sid, ready.length]));
    for (const entry of ready) {
      // Waiting messages become deliveries; ones already awaiting an ack go to this connection too.
      if (entry.state === State.WAITING) this.markInflight(entry, conn.user);
      this.enqueue(conn.shard, null, conn.sid, entry);
    }
  }

  private offline(sid: string): void {
    const conn = this.conns.get(sid);
    if (!conn) return;
    this.conns.delete(sid);
    const conns = this.users.get(conn.user);
    conns?.delete(sid);
    if (conns && conns.size === 0) this.users.delete(conn.user);
    for (const group of conn.groups) this.leaveGroup(group, sid);
  }

  private membership(sid: string, group: string, joined: boolean, weight: number): void {
    const conn = this.conns.get(sid);
    if (!conn) return;
    if (!joined) {
      conn.groups.delete(group);
      return this.leaveGroup(group, sid);
    }
    if (weight > 0) conn.weight = weight;
    conn.groups.add(group);
    let members = this.groups.get(group);
    if (!members) this.groups.set(group, (members = new GroupMembers()));
    members.add(conn);
    // Messages stored for the group while nobody was online go out now.
    const target = this.targets.get(`g:${group}`);
    if (!target) return;
    for (let pri = 3; pri >= 0; pri--) {
      for (const entry of [...target.lanes[pri]!.values()]) if (entry.state === State.WAITING) this.deliverToMember(entry);
    }
  }

  private leaveGroup(group: string, sid: string): void {
    const members = this.groups.get(group);
    if (!members) return;
    members.delete(sid);
    if (members.size === 0) this.groups.delete(group);
  }

  // --- in-memory index ---------------------------------------------------------------------

  private insert(entry: Entry): void {
    let target = this.targets.get(entry.m.target);
    if (!target) this.targets.set(entry.m.target, (target = { lanes: [new Map(), new Map(), new Map(), new Map()], size: 0 }));
    target.lanes[entry.m.pri]!.set(entry.m.id, entry);
    target.size++;
    this.byId.set(entry.m.id, entry);
  }

  private unlink(entry: Entry): void {
    this.releaseHolder(entry);
    this.byId.delete(entry.m.id);
    const target = this.targets.get(entry.m.target);
    if (target && target.lanes[entry.m.pri]!.delete(entry.m.id)) {
      target.size--;
      if (target.size === 0) this.targets.delete(entry.m.target);
    }
  }

  private nextPubId(): string {
    return `${this.options.instance}.p.${(this.pubSeq++).toString(36)}`;
  }

  // --- processed publishes -----------------------------------------------------------------

  private processPub(id: string, from: string, group: string, data: string, pri: number, type: string | null, acked: () => void): void {
    const send = (dataJson: string, p: number): void => {
      const frame = encodeGroupMsgJson(id, from, group, dataJson, p, Date.now());
      const record = encodeRecord(ToShard.GROUP_PUB, [group, frame]);
      for (const writer of this.writers) writer.write(record);
      acked();
    };
    const processor = type === null ? undefined : this.processors.get(type);
    if (processor === undefined) return send(data, pri);
    const incoming: Incoming = { target: `p:${group}`, from, group, data, pri, at: 0, strategy: null };
    const message: ProcessorMessage = { kind: 'pub', from, group, data: JSON.parse(data), pri };
    this.runProcessor(type!, processor, message, incoming, (result) => {
      if (result === null) return acked();
      send(JSON.stringify(result.data) ?? 'null', clampPri(result.pri));
    }, { ok: acked, fail: acked });
  }

  // --- dead-letter admin -------------------------------------------------------------------

  /** The /admin/dlq API (shards forward the HTTP requests here). */
  async admin(method: string, path: string): Promise<{ status: number; body: unknown }> {
    const url = new URL(path, 'http://x');
    const parts = url.pathname.split('/').filter(Boolean); // ['admin', 'dlq', id?, action?]
    const store = this.options.store;
    if (parts[0] !== 'admin' || parts[1] !== 'dlq' || parts.length > 4) return notFound();
    const id = parts[2] === undefined ? undefined : decodeURIComponent(parts[2]);
    try {
      if (method === 'get' && id === undefined) {
        const limit = Math.min(1000, Math.max(1, Number(url.searchParams.get('limit') ?? DEFAULT_LIST_LIMIT) || DEFAULT_LIST_LIMIT));
        const after = url.searchParams.get('after') ?? undefined;
        return { status: 200, body: { count: store.countDead(), items: store.listDead(limit, after).map(showDead) } };
      }
      if (id === undefined) {
        if (method === 'delete') return { status: 200, body: { purged: await store.purgeDead() } };
        return notFound();
      }
      const letter = store.getDead(id);
      if (!letter) return { status: 404, body: { code: 'not_found', message: `no dead letter ${id}` } };
      if (method === 'get' && parts.length === 3) return { status: 200, body: showDead(letter) };
      if (method === 'delete' && parts.length === 3) {
        await store.removeDead(id);
        return { status: 200, body: { purged: 1 } };
      }
      if (method === 'post' && parts[3] === 'requeue') return { status: 200, body: { requeued: await this.requeue(letter) } };
      return notFound();
    } catch (err) {
      return { status: 500, body: { code: 'E_INTERNAL', message: (err as Error).message } };
    }
  }

  /** Puts a dead letter back in its recipient's queue as a fresh message (attempts 0, new sequence). */
  private async requeue(letter: DeadLetter): Promise<string> {
    if (letter.target.startsWith('p:')) throw new Error('a dead-lettered pub cannot be requeued: pubs are not stored');
    const { reason: _reason, failedAt: _failedAt, ...message } = letter;
    const m: StoredMessage = { ...message, seq: (this.lastSeq = Math.max(this.lastSeq + 1, Date.now() * 1000)), attempts: 0, at: 0 };
    const entry = newEntry(m, State.STORING);
    this.insert(entry);
    void this.options.store.removeDead(letter.id);
    await this.options.store.put(m);
    entry.state = State.WAITING;
    this.route(entry);
    return m.id;
  }
}

function newEntry(m: StoredMessage, state: State): Entry {
  return { m, state, holder: null, frame: null, deadline: 0, prev: null, next: null, list: -1 };
}

function frameOf(entry: Entry): string {
  const m = entry.m;
  return (entry.frame ??= encodeStoredMsg(m.id, m.from, m.group, m.data, m.pri, m.ts));
}

function showDead(letter: DeadLetter): Record<string, unknown> {
  let data: unknown = letter.data;
  try {
    data = JSON.parse(letter.data);
  } catch {
    // kept as text
  }
  const kind = letter.target.slice(0, 2);
  return {
    id: letter.id,
    kind: kind === 'u:' ? 'send' : kind === 'g:' ? 'any' : 'pub',
    to: letter.target.slice(2),
    from: letter.from,
    group: letter.group,
    data,
    pri: letter.pri,
    ts: letter.ts,
    attempts: letter.attempts,
    reason: letter.reason,
    failedAt: letter.failedAt,
  };
}

function notFound(): { status: number; body: unknown } {
  return { status: 404, body: { code: 'not_found', message: 'see GET /admin/dlq, GET|DELETE /admin/dlq/ID, POST /admin/dlq/ID/requeue, DELETE /admin/dlq' } };
}

function clampPri(pri: unknown): number {
  return pri === 0 || pri === 1 || pri === 2 || pri === 3 ? pri : 1;
}

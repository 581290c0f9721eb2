/**
 * The broker on its own, for unit tests: a real MessageStore in a fresh directory and, for the
 * shards, a ShardLink that records what the broker says to them and plays the shards' side:
 * it sends the records a shard would (encoded and decoded exactly as on the ring), and knows
 * which `data.type` values have a processor, as a shard is told.
 */
import { rmSync } from 'node:fs';
import { Broker } from '../../src/broker/broker.js';
import type { RecordSink, ShardLink } from '../../src/broker/shard-link.js';
import { loadConfig } from '../../src/config/load.js';
import { decodeFields, encodeRecord, FRAME_RECORD_OVERHEAD, ToBroker, typeOfData } from '../../src/link/records.js';
import { largestRecord } from '../../src/rings/ring.js';
import type { ErrorCode } from '../../src/protocol/errors.js';
import { MessageStore } from '../../src/store/store.js';
import { createLogger } from '../../src/util/logger.js';
import type { Frame } from './client.js';
import { tempDataDir } from './server.js';

/** One thing the broker told a shard, with when (Date.now()) it said it. */
export type Call = { time: number; shard: number } & (
  | { op: 'deliverToUser'; user: string; frame: string; arrivedAt: number; live: number }
  | { op: 'deliverToSid'; sid: string; frame: string; arrivedAt: number; live: number }
  | { op: 'senderAck'; sid: string; ref: string | null; id: string; offset: number | undefined }
  | { op: 'error'; sid: string; code: ErrorCode; message: string; ref: string | null; close?: boolean; id?: string }
  | { op: 'welcome'; sid: string; pending: number }
  | { op: 'groupPub'; group: string; frame: string }
  | { op: 'reply'; sid: string; frame: string }
  | { op: 'groupJoined'; sid: string; group: string; ref: string | null; replay: readonly string[]; top: number; epoch: string; recovered: number }
  | { op: 'groupJoinFailed'; sid: string; group: string; ref: string | null; message: string }
  | { op: 'groupLeft'; sid: string; group: string; ref: string | null }
  | { op: 'adminReply'; requestId: number; status: number; bodyJson: string }
  | { op: 'shardDown' }
);
type Said = Call extends infer C ? (C extends Call ? Omit<C, 'time'> : never) : never;

export class RecordingLink implements ShardLink {
  readonly calls: Call[] = [];
  /** As a ring of performance.ring_bytes would carry (startBroker sets it from the config). */
  maxFrameBytes = largestRecord(4 * 1024 * 1024) - FRAME_RECORD_OVERHEAD;
  /** The types the broker asked the shards to detour through it (publishProcessorTypes). */
  processorTypes = new Set<string>();
  private sink: RecordSink | null = null;
  private adminRequests = 0;
  private waiters: Array<() => void> = [];
  /** Each sender's ref's answer (its first senderAck or error): answerTo looks it up, not through every call. */
  private readonly answers = new Map<string, Extract<Call, { op: 'senderAck' | 'error' }>>();

  deliverToUser(shard: number, user: string, frame: string, arrivedAt = 0, live = 0): void {
    this.record({ op: 'deliverToUser', shard, user, frame, arrivedAt, live });
  }
  deliverToSid(shard: number, sid: string, frame: string, arrivedAt = 0, live = 0): void {
    this.record({ op: 'deliverToSid', shard, sid, frame, arrivedAt, live });
  }
  senderAck(shard: number, sid: string, ref: string | null, id: string, offset?: number): void {
    this.record({ op: 'senderAck', shard, sid, ref, id, offset });
  }
  error(shard: number, sid: string, code: ErrorCode, message: string, ref: string | null, close = false, id?: string): void {
    this.record({ op: 'error', shard, sid, code, message, ref, ...(close && { close }), ...(id !== undefined && { id }) });
  }
  welcome(shard: number, sid: string, pending: number): void {
    this.record({ op: 'welcome', shard, sid, pending });
  }
  groupPub(group: string, frame: string): void {
    this.record({ op: 'groupPub', shard: -1, group, frame });
  }
  reply(shard: number, sid: string, frame: string): void {
    this.record({ op: 'reply', shard, sid, frame });
  }
  requestReport(): void {
    // Metrics requests are not what these tests look at.
  }
  groupJoined(shard: number, sid: string, group: string, ref: string | null, replay: readonly string[], top: number, epoch: string, recovered: number): void {
    this.record({ op: 'groupJoined', shard, sid, group, ref, replay, top, epoch, recovered });
  }
  groupJoinFailed(shard: number, sid: string, group: string, ref: string | null, message: string): void {
    this.record({ op: 'groupJoinFailed', shard, sid, group, ref, message });
  }
  groupLeft(shard: number, sid: string, group: string, ref: string | null): void {
    this.record({ op: 'groupLeft', shard, sid, group, ref });
  }
  adminReply(shard: number, requestId: number, status: number, bodyJson: string): void {
    this.record({ op: 'adminReply', shard, requestId, status, bodyJson });
  }
  listen(onRecord: RecordSink): void {
    this.sink = onRecord;
  }
  shardDown(shard: number): void {
    this.record({ op: 'shardDown', shard });
  }
  stop(): void {
    this.sink = null;
  }

  // --- what a shard sends (field order: src/link/records.ts) ----------------------------

  online(shard: number, sid: string, user: string): void {
    this.fromShard(shard, ToBroker.PRESENCE, [sid, user, 1]);
  }
  offline(shard: number, sid: string, user: string): void {
    this.fromShard(shard, ToBroker.PRESENCE, [sid, user, 0]);
  }
  /** `weight`: the token's weight claim, 0 for none; `watch`: presence events. */
  join(shard: number, sid: string, group: string, weight = 0, watch = false): void {
    this.fromShard(shard, ToBroker.MEMBERSHIP, [sid, group, 1, weight, watch ? 1 : 0]);
  }
  leave(shard: number, sid: string, group: string): void {
    this.fromShard(shard, ToBroker.MEMBERSHIP, [sid, group, 0, 0, 0]);
  }
  /** A join of a history group (after join()), recovering from `since` when given. */
  groupJoin(shard: number, sid: string, group: string, ref: string | null, since?: { offset: number; epoch: string }): void {
    this.fromShard(shard, ToBroker.GROUP_JOIN, [sid, group, ref, since?.offset ?? -1, since?.epoch ?? null]);
  }
  presenceQuery(shard: number, sid: string, group: string, ref: string | null, counts = false): void {
    this.fromShard(shard, ToBroker.PRESENCE_QUERY, [sid, group, ref, counts ? 1 : 0]);
  }
  history(shard: number, sid: string, group: string, ref: string | null, since: number, limit = 0): void {
    this.fromShard(shard, ToBroker.HISTORY, [sid, group, ref, since, limit]);
  }
  /** A pub to a group that keeps history (as the shard sends it, without a processor type). */
  historyPub(shard: number, sid: string, from: string, group: string, data: unknown, ref: string | null): void {
    this.fromShard(shard, ToBroker.PUB, [sid, ref, from, group, JSON.stringify(data), 1, null, 0]);
  }
  send(shard: number, sid: string, from: string, to: string, data: unknown, o: { ref?: string; pri?: number; at?: number } = {}): void {
    this.fromShard(shard, ToBroker.SEND, [sid, o.ref ?? null, from, to, JSON.stringify(data), o.pri ?? 1, o.at ?? 0, this.typeOf(data)]);
  }
  any(shard: number, sid: string, from: string, group: string, data: unknown, o: { ref?: string; pri?: number; strategy?: string } = {}): void {
    this.fromShard(shard, ToBroker.ANY, [sid, o.ref ?? null, from, group, JSON.stringify(data), o.pri ?? 1, o.strategy ?? null, this.typeOf(data)]);
  }
  /** A `pub` whose data.type has a processor (others never reach the broker). */
  pub(shard: number, sid: string, from: string, group: string, data: unknown, ref: string | null): void {
    this.fromShard(shard, ToBroker.PUB, [sid, ref, from, group, JSON.stringify(data), 1, typeOfData(data)]);
  }
  ack(shard: number, sid: string, user: string, id: string): void {
    this.fromShard(shard, ToBroker.ACK, [sid, user, id]);
  }
  admin(shard: number, requestId: number, method: string, path: string): void {
    this.fromShard(shard, ToBroker.ADMIN, [requestId, method, path]);
  }
  /** One /admin/dlq request as shard 0 forwards it (method in lower case, as uWS gives it), and its answer. */
  async adminRequest(method: string, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
    const requestId = --this.adminRequests; // negative: apart from the ids tests pick themselves
    this.admin(0, requestId, method, path);
    const reply = await this.next('adminReply', (c) => c.requestId === requestId);
    return { status: reply.status, body: JSON.parse(reply.bodyJson) as Record<string, unknown> };
  }

  // --- reading what the broker said ------------------------------------------------------

  /** The first call `op` (oldest first) matching `match`, now or once it is made. */
  next<O extends Call['op']>(op: O, match: (call: Extract<Call, { op: O }>) => boolean = () => true, timeoutMs = 5000): Promise<Extract<Call, { op: O }>> {
    return this.nextCall((c): c is Extract<Call, { op: O }> => c.op === op && match(c as Extract<Call, { op: O }>), `${op} ${match.toString()}`, timeoutMs);
  }

  /** What the sender of `ref` heard back: its senderAck or its error. */
  answerTo(ref: string): Promise<Extract<Call, { op: 'senderAck' | 'error' }>> {
    return this.waitFor(() => this.answers.get(ref), `the answer to ${ref}`, 5000);
  }

  private nextCall<C extends Call>(match: (call: Call) => call is C, what: string, timeoutMs: number): Promise<C> {
    // Each look reads only the calls made since the last: reading them all at each new call made
    // a wait over thousands of calls quadratic, and thousands of waits never ended.
    let seen = 0;
    return this.waitFor(
      () => {
        for (; seen < this.calls.length; seen++) {
          const call = this.calls[seen]!;
          if (match(call)) return call;
        }
        return undefined;
      },
      what,
      timeoutMs,
    );
  }

  /** What `look` finds, now or after some call to come. */
  private waitFor<T>(look: () => T | undefined, what: string, timeoutMs: number): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no call matching ${what} within ${timeoutMs} ms`)), timeoutMs);
      const check = (): void => {
        const found = look();
        if (found === undefined) return void this.waiters.push(check);
        clearTimeout(timer);
        resolve(found);
      };
      check();
    });
  }

  /** Every call `op` made so far matching `match`. */
  all<O extends Call['op']>(op: O, match: (call: Extract<Call, { op: O }>) => boolean = () => true): Array<Extract<Call, { op: O }>> {
    return this.calls.filter((c): c is Extract<Call, { op: O }> => c.op === op && match(c as Extract<Call, { op: O }>));
  }

  private typeOf(data: unknown): string | null {
    const type = typeOfData(data);
    return type !== null && this.processorTypes.has(type) ? type : null;
  }

  /** Through the record encoding, as on the ring: the broker sees what a shard's record decodes to. */
  private fromShard(shard: number, kind: number, fields: unknown[]): void {
    if (this.sink === null) throw new Error('the broker is not listening');
    const record = encodeRecord(kind, fields);
    this.sink(shard, record[0]!, decodeFields(record, 0, record.byteLength));
  }

  private record(said: Said): void {
    const call = { ...said, time: Date.now() } as Call;
    this.calls.push(call);
    if ((call.op === 'senderAck' || call.op === 'error') && call.ref !== null && !this.answers.has(call.ref)) this.answers.set(call.ref, call);
    const waiters = this.waiters;
    this.waiters = [];
    for (const check of waiters) check();
  }
}

/** The `msg` frames in a delivered frame, unpacking a `batch`. */
export function msgsIn(frame: string): Frame[] {
  const parsed = JSON.parse(frame) as Frame;
  return parsed.op === 'batch' ? (parsed.msgs as Frame[]) : [parsed];
}

export interface TestBroker {
  broker: Broker;
  link: RecordingLink;
  store: MessageStore;
  dataDir: string;
  /** Stops the broker and closes the store; the data directory goes too unless `keepData` (to start another broker on it). */
  close(keepData?: boolean): Promise<void>;
}

export interface BrokerSettings {
  delivery?: Record<string, unknown>;
  /** websocket.history rules and websocket.presence settings. */
  historyRules?: unknown[];
  presence?: Record<string, unknown>;
  /** The top-level history section (persist, max_groups, max_bytes...). */
  history?: Record<string, unknown>;
  performance?: Record<string, unknown>;
  server?: Record<string, unknown>;
  /** store.* keys other than data_dir. */
  store?: Record<string, unknown>;
  /** An existing data directory (e.g. a previous broker's), else a fresh one. */
  dataDir?: string;
  /** The process run's id (two runs on one store must differ); default 'test'. */
  instance?: string;
  /** Started as a process standing by while another holds the store (a pm2 reload's new one): nothing loaded until broker.takeOver(). */
  standBy?: boolean;
}

/** A started broker with `delivery`, `performance`, `server` and `store` settings over the defaults. */
export async function startBroker(settings: BrokerSettings = {}): Promise<TestBroker> {
  const dir = settings.dataDir ?? tempDataDir();
  const websocket = {
    delivery: settings.delivery ?? {},
    performance: settings.performance ?? {},
    server: settings.server ?? {},
    history: settings.historyRules ?? [],
    presence: settings.presence ?? {},
  };
  const { config } = loadConfig({ env: {}, overrides: { websocket, store: { ...settings.store, data_dir: dir }, history: settings.history ?? {} } });
  const store = await MessageStore.open(dir, config.store.sync, { letters: config.store.max_dead_letters, bytes: config.store.max_dead_letter_bytes });
  const link = new RecordingLink();
  link.maxFrameBytes = largestRecord(config.websocket.performance.ring_bytes) - FRAME_RECORD_OVERHEAD;
  const broker = new Broker({
    config: config as Broker['options']['config'],
    store,
    instance: settings.instance ?? 'test',
    log: createLogger('silent'),
    link,
    publishProcessorTypes: (types) => (link.processorTypes = new Set(types)),
  });
  broker.start(settings.standBy === true ? { loadStored: false } : {});
  return {
    broker,
    link,
    store,
    dataDir: dir,
    async close(keepData = false) {
      await broker.stop();
      await store.close();
      if (!keepData) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

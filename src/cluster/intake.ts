/**
 * Messages into the Redis store (scripts.ts), on the sender's node: a `send`/`any` refused or
 * run through its processor, then stored (STORE), the sender's ack following the store's
 * reply; a processor's failure dead-lettered on arrival; a dead letter requeued (/admin/dlq).
 * This is the sender's side: its refusals and the bound on stores awaiting Redis are the same
 * whoever the message is for. Getting a stored message to its recipient is messaging.ts's: a
 * message for now has its route script sent right behind its STORE (delivery.before_commit, the
 * default), on the same connection, so Redis runs the route just after the store, and the
 * recipient does not wait for the store's reply to cross back to the node first. Should the
 * store refuse it, the route finds nothing.
 */
import { Buffer } from 'node:buffer';
import type { Config } from '../config/schema.js';
import type { Incoming, MessageIds } from '../broker/ids.js';
import type { Processors } from '../broker/processors.js';
import { scheduleRefusal } from '../broker/embedding-checks.js';
import { OcsError, type ErrorCode } from '../protocol/errors.js';
import type { DeadLetter, StoredMessage } from '../store/messages.js';
import { Latency } from '../metrics/latencies.js';
import type { MessagingParts } from './messaging.js';
import { logCommandFailure, outOfMemory, timedOut } from './redis.js';
import { DEAD_ON_ARRIVAL, STORE } from './scripts.js';
import { WARN_EVERY_MS, warnEvery } from '../util/tally.js';

/** `offset`: the one a pub to a group that keeps history got (groups.ts). */
export type Reply = { ok(id: string, offset?: number): void; fail(code: ErrorCode, message: string): void };

/** Room a `msg` frame needs around its data. */
const MSG_ENVELOPE_BYTES = 1024;
/**
 * Messages accepted but not yet answered by Redis: over it a `send`/`any` is refused with
 * E_OVERLOADED, so a Redis slower than the clients cannot fill the node's memory with them.
 */
export const MAX_STORES_IN_FLIGHT = 10_000;

export interface IntakeParts extends Pick<MessagingParts, 'config' | 'scripts' | 'link' | 'stats' | 'log' | 'up' | 'dueAt' | 'latency' | 'deadDropped'> {
  ids: MessageIds;
  processors: Processors;
  /** A stored message waits for its recipient: delivered now if it is online anywhere (messaging.ts). */
  route(id: string, target: string, receivedAt: number): void;
  /** Room came in a user's window: what waits for it that now fits goes (messaging.ts). */
  pump(user: string): void;
}

export class ClusterIntake {
  private readonly delivery: Config['websocket']['delivery'];
  private readonly prefix: string;
  private storesInFlight = 0;
  /** Messages due now whose STORE timed out: Redis may have stored them after all, and nobody routed them (target by id). */
  private readonly maybeStored = new Map<string, string>();
  private recheck: NodeJS.Timeout | null = null;
  private stopped = false;

  /** Once per WARN_EVERY_MS at most: a client can make a processor fail with each frame. */
  private readonly warnProcessorFailed: (fields: Record<string, unknown>) => void;

  constructor(private readonly parts: IntakeParts) {
    this.warnProcessorFailed = warnEvery(parts.log, WARN_EVERY_MS, 'processor failed; messages dead-lettered');
    this.delivery = parts.config.websocket.delivery;
    this.prefix = parts.config.cluster.key_prefix;
  }

  /**
   * A `send`/`any`: refusals, the processor, the store; the sender's ack once stored; then
   * routing. `receivedAt`: when its shard got the frame (epochMs(); 0: not a client's), for the latencies.
   */
  accept(incoming: Incoming, type: string | null, reply: Reply, fromClient: boolean, receivedAt = 0): void {
    const { processors, ids } = this.parts;
    const tooFar = scheduleRefusal(incoming.at, Date.now(), this.delivery.max_schedule_ahead);
    if (tooFar !== null) return reply.fail('E_BAD_FRAME', tooFar);
    if (!this.parts.up()) return this.unavailable(reply, 'message not stored');
    if (this.storesInFlight >= MAX_STORES_IN_FLIGHT) return reply.fail('E_OVERLOADED', `${MAX_STORES_IN_FLIGHT} messages are waiting for Redis; retry shortly`);
    if (!processors.has(type)) return this.store(incoming, reply, fromClient, receivedAt);
    processors.run(type, incoming, {
      pass: (data, pri) => this.store({ ...incoming, data, pri }, reply, fromClient, receivedAt),
      drop: () => reply.ok(ids.nextPubId()),
      fail: (reason) => this.processorFailed(type, reason, incoming, reply),
      abandon: (reason) => reply.fail('E_CLUSTER_UNAVAILABLE', reason),
    });
  }

  /** Why `data` is too large to ever be delivered, or null. */
  oversize(data: string): string | null {
    const max = this.parts.link.maxFrameBytes - MSG_ENVELOPE_BYTES;
    const bytes = Buffer.byteLength(data);
    return bytes <= max ? null : `data of ${bytes} bytes is over the ${max} one message may carry between threads (performance.ring_bytes)`;
  }

  /**
   * Puts a dead letter back in its recipient's queue (/admin/dlq requeue), as the LMDB broker
   * does: the same id and time, attempts 0, a new sequence, within the recipient's and the
   * store's limits; the letter goes in the same script. Resolves with the id.
   */
  requeue(letter: DeadLetter): Promise<string> {
    return new Promise((resolve, reject) => {
      const reply: Reply = { ok: resolve, fail: (code, message) => reject(new OcsError(code, `not requeued: ${message}`)) };
      if (!this.parts.up()) return this.unavailable(reply, 'message not stored');
      const { target, from, group, data, pri, strategy } = letter;
      const m = { ...this.parts.ids.newMessage({ target, from, group, data, pri, at: 0, strategy }, letter.id), ts: letter.ts };
      this.storeMessage(m, reply, false, letter.id);
    });
  }

  private store(incoming: Incoming, reply: Reply, fromClient: boolean, receivedAt: number): void {
    this.storeMessage(this.parts.ids.newMessage(incoming), reply, fromClient, '', receivedAt);
  }

  private storeMessage(m: StoredMessage, reply: Reply, fromClient: boolean, requeueOf = '', receivedAt = 0): void {
    const over = this.oversize(m.data);
    if (over !== null) return reply.fail('E_TOO_LARGE', over);
    const { config, stats } = this.parts;
    const now = Date.now();
    const args = [
      this.prefix, m.id, m.target, m.from, m.group ?? '', m.data, m.pri, m.ts, m.at, m.strategy ?? '', Buffer.byteLength(m.data),
      this.delivery.max_pending_per_user, fromClient ? this.delivery.max_stored_per_sender : 0,
      config.store.max_messages, config.store.max_bytes, now, this.delivery.ttl * 1000, requeueOf,
      fromClient ? this.delivery.max_stored_bytes_per_sender : 0, config.store.max_dead_letters, config.store.max_dead_letter_bytes,
    ];
    this.storesInFlight++;
    const { scripts } = this.parts;
    const resent = scripts.resent;
    const stored = scripts.run(STORE, args) as Promise<[string, string, string, string?, number?]>;
    // For now (not scheduled), unless delivery.before_commit is off: routed behind the STORE in
    // Redis's order, without waiting for its reply.
    let routedAhead = m.at === 0 && this.delivery.before_commit;
    if (routedAhead) this.parts.route(m.id, m.target, receivedAt);
    // Handled straight on the reply (no finally() hop before it): the route's reply, which came
    // with it, is handled next, and the sender's ack goes out ahead of the delivery.
    stored.then(
      ([verdict, detail, dropped, freed, deadDropped]) => {
        this.storesInFlight--;
        if (verdict === 'gone') return reply.fail('E_UNKNOWN_ID', detail);
        if (verdict !== 'ok') {
          stats.queue_full++;
          return reply.fail('E_QUEUE_FULL', detail);
        }
        stats.accepted++;
        if (deadDropped) this.parts.deadDropped(deadDropped);
        if (dropped) {
          stats.dropped_low++;
          stats.dead_lettered++;
          // The LOW message dropped was waiting (one in flight is never dropped), maybe the first
          // that did not fit its user's window: what waits behind it may fit now. (`freed` is
          // always empty from this version's STORE: no window loses a message it holds.)
          if (m.target.startsWith('u:')) this.parts.pump(m.target.slice(2));
          if (freed) this.parts.pump(freed);
        }
        if (receivedAt > 0) this.parts.latency?.since(Latency.commit, receivedAt);
        reply.ok(m.id);
        if (detail === 's') this.parts.dueAt(m.at);
        // A script resent as text (NOSCRIPT) ran behind what followed it: the route may have come first.
        if (scripts.resent !== resent) routedAhead = false;
        // Else (or a message whose \`at\` had passed, whose wait is not the server's send latency): routed now.
        if (detail === 'w' && !routedAhead) this.parts.route(m.id, m.target, m.at === 0 ? receivedAt : 0);
      },
      (err: unknown) => {
        this.storesInFlight--;
        if (timedOut(err) && m.at === 0) this.routeLater(m.id, m.target);
        this.failed(err, reply, 'message not stored');
      },
    );
  }

  /**
   * Routes the messages whose STORE timed out, once Redis answers again (after two command
   * timeouts, or when the node is back after an outage: node.ts resync). One that Redis stored
   * goes to its recipient now rather than at the recipient's next connection; one it did not
   * store is not found (the route scripts claim only a waiting message).
   */
  routeMaybeStored(): void {
    if (this.stopped || !this.parts.up()) return; // the resync after the outage calls again
    for (const [id, target] of this.maybeStored) this.parts.route(id, target, 0);
    this.maybeStored.clear();
  }

  stop(): void {
    this.stopped = true;
    if (this.recheck !== null) clearTimeout(this.recheck);
    this.recheck = null;
    this.maybeStored.clear();
  }

  private routeLater(id: string, target: string): void {
    if (this.stopped) return;
    // At most the stores that can be in flight at once are held.
    if (this.maybeStored.size < MAX_STORES_IN_FLIGHT) this.maybeStored.set(id, target);
    this.recheck ??= setTimeout(() => {
      this.recheck = null;
      this.routeMaybeStored();
    }, 2 * this.parts.config.cluster.command_timeout * 1000);
  }

  /**
   * A processor threw or returned what cannot be JSON: the message goes to the dead-letter
   * queue; its sender still gets its ack. `id`: the one a processed `pub` is acknowledged with.
   */
  processorFailed(type: string, reason: string, incoming: Incoming, reply: Reply, id?: string): void {
    this.warnProcessorFailed({ type, reason });
    if (!this.parts.up()) return this.unavailable(reply, 'message not dead-lettered');
    const m = this.parts.ids.newMessage(incoming, id);
    const { store } = this.parts.config;
    const args = [this.prefix, m.id, m.target, m.from, m.group ?? '', m.data, m.pri, m.ts, reason, Date.now(), store.max_dead_letters, store.max_dead_letter_bytes];
    (this.parts.scripts.run(DEAD_ON_ARRIVAL, args) as Promise<number>).then(
      (deadDropped) => {
        if (deadDropped > 0) this.parts.deadDropped(deadDropped);
        this.parts.stats.dead_lettered++;
        reply.ok(m.id);
      },
      (err: unknown) => this.failed(err, reply, 'message not stored'),
    );
  }

  private unavailable(reply: Reply, what: string): void {
    this.parts.stats.cluster_unavailable++;
    reply.fail('E_CLUSTER_UNAVAILABLE', `${what}: Redis is unreachable; send and any are refused until it is back`);
  }

  private failed(err: unknown, reply: Reply, what: string): void {
    logCommandFailure(this.parts, err, 'store');
    if (outOfMemory(err)) return reply.fail('E_STORE_UNAVAILABLE', `${what}: Redis is at its maxmemory; send and any are refused until acknowledgements free room`);
    if (!timedOut(err)) return this.unavailable(reply, what);
    // The script was sent; Redis may still run it when it answers again: say so rather than "not stored".
    this.parts.stats.cluster_unavailable++;
    reply.fail('E_CLUSTER_UNAVAILABLE', 'Redis did not answer within cluster.command_timeout: the message may or may not be stored (a retry may deliver it twice)');
  }
}

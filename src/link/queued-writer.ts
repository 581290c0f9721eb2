/**
 * The producer end of one ring, with back-pressure instead of loss: a record that finds the
 * ring full waits, in order, in an overflow queue that is flushed as the consumer frees space.
 * Producers look at `backlog` to refuse new work while too much waits. Used for shard-to-shard
 * and shard-to-broker traffic alike.
 *
 * Two records are refused instead, at once, with a code the caller handles: one the ring can
 * never take (E_TOO_LARGE: over half the ring, it would wait at the head forever and wedge
 * every record behind it), and one that would take the overflow over its bound (E_OVERLOADED).
 */
import type { DoorbellRinger } from '../rings/doorbell.js';
import { RingWriter } from '../rings/ring.js';

const RETRY_MS = 1;

/** Why a record was refused; nothing of it was written or queued. */
export type WriteRefusal = 'E_TOO_LARGE' | 'E_OVERLOADED';

export interface QueuedWriterHooks {
  /** Called for each record that found the ring full and had to wait. */
  onQueued?(): void;
  /** Called with the number of waiting records that reached the ring. */
  onFlushed?(records: number): void;
  /** A record was refused; `first`: this writer's first refusal with this code (worth one log line). */
  onRefused?(code: WriteRefusal, bytes: number, first: boolean): void;
  /** False when the records waiting are void (their consumer died, or was replaced): flush() drops them. */
  stillWanted?(): boolean;
}

export class QueuedRingWriter {
  private readonly writer: RingWriter;
  private overflow: Uint8Array[] = [];
  /** When each waiting record was queued (Date.now()), in the same order. */
  private queuedAt: number[] = [];
  private overflowBytes = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  /** A ring owed for records written by writeSoon(), due at the end of this turn of the loop. */
  private ringOwed = false;
  private ringQueued = false;
  private stopped = false;
  private readonly refusedOnce = new Set<WriteRefusal>();
  /** How many times the overflow went from holding records to empty (what waits for a backed-up consumer knows it caught up). */
  emptied = 0;
  /** The ring's data region: fill a reserved record through it. */
  readonly bytes: Uint8Array;
  /** The largest record the ring can ever take (largestRecord()). */
  readonly maxRecord: number;

  /**
   * @param maxBacklog bytes the overflow may hold by default (see write()); Infinity: unbounded
   */
  constructor(
    buffer: SharedArrayBuffer,
    private readonly ringer: DoorbellRinger,
    readonly target: number,
    private readonly hooks: QueuedWriterHooks = {},
    readonly maxBacklog = Infinity,
  ) {
    this.writer = new RingWriter(buffer);
    this.bytes = this.writer.bytes;
    this.maxRecord = this.writer.maxPayload;
  }

  /** Bytes waiting for the ring to drain. */
  get backlog(): number {
    return this.overflowBytes;
  }

  /** When the oldest waiting record was queued (Date.now()); 0 when none waits. */
  get oldestQueuedAt(): number {
    return this.queuedAt[0] ?? 0;
  }

  /**
   * Zero-copy path: room for a record of `length` bytes, at the returned offset in `bytes`;
   * fill it and call publish(). -1 when the ring is full, or records already wait (they go
   * first), or it can never fit: then hand the record to enqueue(), which decides.
   */
  reserve(length: number): number {
    return this.overflow.length === 0 ? this.writer.reserve(length) : -1;
  }

  publish(): void {
    this.writer.publish();
    this.ringNow();
  }

  /**
   * Copies `record` into the ring, or queues it (the array is kept: do not reuse it); null
   * when done. Refused, with nothing queued: a record that can never fit, or one that would
   * take the overflow over `limit` bytes (a caller may allow more for records it cannot lose).
   */
  write(record: Uint8Array, limit = this.maxBacklog): WriteRefusal | null {
    if (this.overflow.length === 0 && this.writer.tryWrite(record)) {
      this.ringNow();
      return null;
    }
    return this.enqueue(record, limit);
  }

  /**
   * As write(), but the consumer is rung once at the end of this turn of the event loop for
   * every record written so in it (or sooner, by any write() meanwhile): for records nobody
   * waits on within microseconds. A ring that finds the consumer asleep is an Atomics.notify,
   * and in a reconnect storm the broker slept again between most of a shard's presence
   * records: those notifies were 45% of the shard's CPU profile (README, Performance, TLS).
   */
  writeSoon(record: Uint8Array, limit = this.maxBacklog): WriteRefusal | null {
    if (this.overflow.length === 0 && this.writer.tryWrite(record)) {
      this.ringOwed = true;
      if (!this.ringQueued) {
        this.ringQueued = true;
        setImmediate(this.ringIfOwed);
      }
      return null;
    }
    return this.enqueue(record, limit);
  }

  /** Queues `record` behind the others until the ring has room, or refuses it as write() does. */
  enqueue(record: Uint8Array, limit = this.maxBacklog): WriteRefusal | null {
    if (record.byteLength > this.maxRecord) return this.refuse('E_TOO_LARGE', record.byteLength);
    if (this.overflowBytes + record.byteLength > limit) return this.refuse('E_OVERLOADED', record.byteLength);
    // Stopping: a retry timer would keep the thread alive; the consumer is going away too.
    if (this.stopped) return null;
    this.overflow.push(record);
    this.queuedAt.push(Date.now());
    this.overflowBytes += record.byteLength;
    this.hooks.onQueued?.();
    if (this.retryTimer === null) this.retryTimer = setTimeout(() => this.flush(), RETRY_MS);
    return null;
  }

  /** The consumer is gone (its thread died or is stopping): what waited for it is void. */
  discard(): void {
    if (this.overflow.length > 0) this.emptied++;
    this.overflow = [];
    this.queuedAt = [];
    this.overflowBytes = 0;
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  private ringNow(): void {
    this.ringOwed = false;
    this.ringer.ring(this.target);
  }

  private readonly ringIfOwed = (): void => {
    this.ringQueued = false;
    if (this.ringOwed) this.ringNow();
  };

  private refuse(code: WriteRefusal, bytes: number): WriteRefusal {
    const first = !this.refusedOnce.has(code);
    this.refusedOnce.add(code);
    this.hooks.onRefused?.(code, bytes, first);
    return code;
  }

  private flush(): void {
    this.retryTimer = null;
    if (this.hooks.stillWanted && !this.hooks.stillWanted()) return this.discard();
    let sent = 0;
    while (sent < this.overflow.length && this.writer.tryWrite(this.overflow[sent]!)) {
      this.overflowBytes -= this.overflow[sent]!.byteLength;
      sent++;
    }
    if (sent > 0) {
      this.overflow.splice(0, sent);
      this.queuedAt.splice(0, sent);
      this.ringNow();
      this.hooks.onFlushed?.(sent);
      if (this.overflow.length === 0) this.emptied++;
    }
    if (this.overflow.length > 0) this.retryTimer = setTimeout(() => this.flush(), RETRY_MS);
  }
}

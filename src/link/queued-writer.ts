/**
 * The producer end of one ring, with back-pressure instead of loss: a record that finds the
 * ring full waits, in order, in an overflow queue that is flushed as the consumer frees space.
 * Producers look at `backlog` to refuse new work while too much waits. Used for shard-to-shard
 * and shard-to-broker traffic alike.
 */
import type { DoorbellRinger } from '../rings/doorbell.js';
import { RingWriter } from '../rings/ring.js';

const RETRY_MS = 1;

export class QueuedRingWriter {
  private readonly writer: RingWriter;
  private overflow: Uint8Array[] = [];
  private overflowBytes = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** The ring's data region: fill a reserved record through it. */
  readonly bytes: Uint8Array;

  /**
   * @param onQueued called for each record that found the ring full and had to wait
   * @param onFlushed called with the number of waiting records that reached the ring
   */
  constructor(
    buffer: SharedArrayBuffer,
    private readonly ringer: DoorbellRinger,
    readonly target: number,
    private readonly onQueued: () => void = () => {},
    private readonly onFlushed: (records: number) => void = () => {},
  ) {
    this.writer = new RingWriter(buffer);
    this.bytes = this.writer.bytes;
  }

  /** Bytes waiting for the ring to drain. */
  get backlog(): number {
    return this.overflowBytes;
  }

  /**
   * Zero-copy path: room for a record of `length` bytes, at the returned offset in `bytes`;
   * fill it and call publish(). -1 when the ring is full, or records already wait (they go
   * first): then hand the record to enqueue().
   */
  reserve(length: number): number {
    return this.overflow.length === 0 ? this.writer.reserve(length) : -1;
  }

  publish(): void {
    this.writer.publish();
    this.ringer.ring(this.target);
  }

  /** Copies `record` into the ring, or queues it (the array is kept: do not reuse it). */
  write(record: Uint8Array): void {
    if (this.overflow.length === 0 && this.writer.tryWrite(record)) {
      this.ringer.ring(this.target);
      return;
    }
    this.enqueue(record);
  }

  /** Queues `record` behind the others until the ring has room. */
  enqueue(record: Uint8Array): void {
    // Stopping: a retry timer would keep the thread alive; the consumer is going away too.
    if (this.stopped) return;
    this.overflow.push(record);
    this.overflowBytes += record.byteLength;
    this.onQueued();
    if (this.retryTimer === null) this.retryTimer = setTimeout(() => this.flush(), RETRY_MS);
  }

  /** The consumer is gone for good (its thread died): what waited for it is void. */
  discard(): void {
    this.overflow = [];
    this.overflowBytes = 0;
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  private flush(): void {
    this.retryTimer = null;
    let sent = 0;
    while (sent < this.overflow.length && this.writer.tryWrite(this.overflow[sent]!)) {
      this.overflowBytes -= this.overflow[sent]!.byteLength;
      sent++;
    }
    if (sent > 0) {
      this.overflow.splice(0, sent);
      this.ringer.ring(this.target);
      this.onFlushed(sent);
    }
    if (this.overflow.length > 0) this.retryTimer = setTimeout(() => this.flush(), RETRY_MS);
  }
}

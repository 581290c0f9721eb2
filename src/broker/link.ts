/**
 * One direction of a shard <-> broker link: an SPSC ring plus an in-order overflow queue for
 * records that find the ring full (back-pressure, counted, never a silent drop), and a reader
 * that hands each record to a handler. Both the shards and the broker use it.
 */
import { DoorbellRinger } from '../rings/doorbell.js';
import { RingReader, RingWriter } from '../rings/ring.js';
import { decodeFields } from './wire.js';

const RETRY_MS = 1;

export class LinkWriter {
  private readonly writer: RingWriter;
  private overflow: Uint8Array[] = [];
  private overflowBytes = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** Records that found the ring full and waited. */
  fullCount = 0;

  constructor(buffer: SharedArrayBuffer, private readonly ringer: DoorbellRinger, private readonly target: number) {
    this.writer = new RingWriter(buffer);
  }

  /** Bytes waiting for the ring to drain. */
  get backlog(): number {
    return this.overflowBytes;
  }

  write(record: Uint8Array): void {
    if (this.overflow.length === 0 && this.writer.tryWrite(record)) {
      this.ringer.ring(this.target);
      return;
    }
    // Stopping: a retry timer would keep the thread alive; the consumer is going away too.
    if (this.stopped) return;
    this.overflow.push(record);
    this.overflowBytes += record.byteLength;
    this.fullCount++;
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
    }
    if (this.overflow.length > 0) this.retryTimer = setTimeout(() => this.flush(), RETRY_MS);
  }
}

export type RecordHandler = (kind: number, fields: unknown[]) => void;

export class LinkReader {
  private readonly reader: RingReader;

  constructor(buffer: SharedArrayBuffer, private readonly handle: RecordHandler, discardStale: boolean) {
    this.reader = new RingReader(buffer);
    if (discardStale) this.reader.discardAll();
  }

  /** Handles up to `budget` records; returns how many it handled. */
  drain(budget: number): number {
    const reader = this.reader;
    let handled = 0;
    while (handled < budget && reader.next()) {
      handled++;
      const at = reader.offset;
      this.handle(reader.bytes[at]!, decodeFields(reader.bytes, at, reader.length));
    }
    reader.release();
    return handled;
  }
}

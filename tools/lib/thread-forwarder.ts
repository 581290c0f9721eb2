// The least a group of uWS threads on one port needs to deliver a pub to the members on every
// thread: each thread publishes the frame to its own subscribers, then copies it into a
// SharedArrayBuffer ring to each other thread, whose doorbell wakes it to publish the same bytes.
// The rings and doorbells are the real server's (src/rings), with nothing of the server around
// them (no interest table, no overflow gauges, no metrics), so that the baseline server in
// several threads, spread (tools/bench/baseline-server.ts --threads N --spread), measures what
// the layout itself costs.
import { DoorbellListener, DoorbellRinger, createDoorbells } from '../../src/rings/doorbell.js';
import { createRingBuffer, RingReader, RingWriter } from '../../src/rings/ring.js';

/** Shared between the threads: rings[from][to] (null on the diagonal) and one doorbell per thread. */
export interface ForwarderBuffers {
  doorbells: SharedArrayBuffer;
  rings: (SharedArrayBuffer | null)[][];
}

/** 4 MiB per ring: at the benchmark's loads, seconds of pubs while the consumer waits for the core. */
const RING_BYTES = 4 << 20;

export function createForwarderBuffers(threads: number): ForwarderBuffers {
  const rings = Array.from({ length: threads }, (_, from) => Array.from({ length: threads }, (_, to) => (from === to ? null : createRingBuffer(RING_BYTES))));
  return { doorbells: createDoorbells(threads), rings };
}

/**
 * One thread's end. A record is [topic length u8][topic, ASCII][frame]. A ring that is full
 * keeps the record in order behind it (retried on each forward and every millisecond), never
 * drops it: the benchmark counts a lost delivery against the server.
 */
export class ThreadForwarder {
  private readonly writers: { target: number; ring: RingWriter; waiting: Uint8Array[] }[] = [];
  private readonly readers: RingReader[] = [];
  private readonly ringer: DoorbellRinger;
  private readonly listener: DoorbellListener;
  private retry: NodeJS.Timeout | null = null;

  constructor(
    buffers: ForwarderBuffers,
    self: number,
    /** Publishes a record from another thread to this thread's subscribers (views into the ring, valid during the call). */
    private readonly publish: (topic: Uint8Array, frame: Uint8Array) => void,
  ) {
    this.ringer = new DoorbellRinger(buffers.doorbells);
    buffers.rings[self]!.forEach((ring, target) => ring && this.writers.push({ target, ring: new RingWriter(ring), waiting: [] }));
    for (const row of buffers.rings) if (row[self]) this.readers.push(new RingReader(row[self]!));
    this.listener = new DoorbellListener(buffers.doorbells, self, () => this.drain());
    this.listener.start();
  }

  /** Sends `frame` for `topic` (ASCII, under 256 characters: the benchmark's g0, g1...) to every other thread. */
  forward(topic: string, frame: Uint8Array): void {
    for (const out of this.writers) {
      if (out.waiting.length > 0) this.flush(out);
      const length = 1 + topic.length + frame.byteLength;
      const at = out.waiting.length === 0 ? out.ring.reserve(length) : -1;
      const bytes = at >= 0 ? out.ring.bytes : new Uint8Array(length);
      const start = at >= 0 ? at : 0;
      bytes[start] = topic.length;
      for (let i = 0; i < topic.length; i++) bytes[start + 1 + i] = topic.charCodeAt(i);
      bytes.set(frame, start + 1 + topic.length);
      if (at >= 0) {
        out.ring.publish();
        this.ringer.ring(out.target);
      } else {
        out.waiting.push(bytes);
        this.retry ??= setInterval(() => this.flushAll(), 1);
      }
    }
  }

  stop(): void {
    if (this.retry) clearInterval(this.retry);
    this.listener.stop();
  }

  private flushAll(): void {
    let left = 0;
    for (const out of this.writers) left += this.flush(out);
    if (left === 0 && this.retry) {
      clearInterval(this.retry);
      this.retry = null;
    }
  }

  /** Writes what waits for `out` while it fits; returns how many records still wait. */
  private flush(out: (typeof this.writers)[number]): number {
    let sent = 0;
    while (sent < out.waiting.length && out.ring.tryWrite(out.waiting[sent]!)) sent++;
    if (sent > 0) {
      out.waiting.splice(0, sent);
      this.ringer.ring(out.target);
    }
    return out.waiting.length;
  }

  /** Reads every inbound ring to the end (the benchmark's loads are far below a budget's worth). */
  private drain(): boolean {
    for (const reader of this.readers) {
      while (reader.next()) {
        const { bytes, offset, length } = reader;
        const topicEnd = offset + 1 + bytes[offset]!;
        this.publish(bytes.subarray(offset + 1, topicEnd), bytes.subarray(topicEnd, offset + length));
      }
      reader.release();
    }
    return false;
  }
}

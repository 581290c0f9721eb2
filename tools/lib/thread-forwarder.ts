// The least a group of uWS threads on one port needs to deliver a pub to the members on every
// thread: each thread publishes the frame to its own subscribers, then copies it into a
// SharedArrayBuffer ring to each other thread, whose doorbell wakes it to publish the same bytes.
// The rings and doorbells are the real server's (src/rings), with nothing of the server around
// them (no interest table, no overflow gauges, no metrics), so that the baseline server in
// several threads, spread (tools/bench/baseline-server.ts --threads N --spread), measures what
// the layout itself costs.
import { DoorbellListener, DoorbellRinger, createDoorbells } from '../../src/rings/doorbell.js';
import { QueuedRingWriter } from '../../src/link/queued-writer.js';
import { createRingBuffer, RingReader } from '../../src/rings/ring.js';

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
 * keeps the record in order behind it (the server's QueuedRingWriter), never drops it: the
 * benchmark counts a lost delivery against the server.
 */
export class ThreadForwarder {
  private readonly writers: QueuedRingWriter[] = [];
  private readonly readers: RingReader[] = [];
  private readonly listener: DoorbellListener;

  constructor(
    buffers: ForwarderBuffers,
    self: number,
    /** Publishes a record from another thread to this thread's subscribers (views into the ring, valid during the call). */
    private readonly publish: (topic: Uint8Array, frame: Uint8Array) => void,
  ) {
    const ringer = new DoorbellRinger(buffers.doorbells);
    buffers.rings[self]!.forEach((ring, target) => ring && this.writers.push(new QueuedRingWriter(ring, ringer, target)));
    for (const row of buffers.rings) if (row[self]) this.readers.push(new RingReader(row[self]!));
    this.listener = new DoorbellListener(buffers.doorbells, self, () => this.drain());
    this.listener.start();
  }

  /** Sends `frame` for `topic` (ASCII, under 256 characters: the benchmark's g0, g1...) to every other thread. */
  forward(topic: string, frame: Uint8Array): void {
    // A longer name does not fit the length byte: such a group (never the benchmark's) stays on its thread.
    if (topic.length > 255) return;
    const length = 1 + topic.length + frame.byteLength;
    for (const out of this.writers) {
      const at = out.reserve(length);
      if (at >= 0) {
        writeRecord(out.bytes, at, topic, frame);
        out.publish();
      } else {
        const record = new Uint8Array(length);
        writeRecord(record, 0, topic, frame);
        out.enqueue(record);
      }
    }
  }

  stop(): void {
    for (const out of this.writers) out.stop();
    this.listener.stop();
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

function writeRecord(bytes: Uint8Array, at: number, topic: string, frame: Uint8Array): void {
  bytes[at] = topic.length;
  for (let i = 0; i < topic.length; i++) bytes[at + 1 + i] = topic.charCodeAt(i);
  bytes.set(frame, at + 1 + topic.length);
}

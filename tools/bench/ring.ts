/**
 * Our SPSC record ring (src/rings/ring.ts) against ringbuf.js, moving variable-length
 * records the way the shards do: the consumer ends up with a contiguous view of each payload.
 *
 *   npm run bench:ring [-- --records 2000000 --sizes 64,256,1024]
 *
 * Prints JSON: nanoseconds per record and records per second for each implementation and
 * payload size, single-threaded (write a burst, read it back: the pure cost of the code) and
 * across two threads (a producer worker, this thread consuming: adds the cache traffic).
 *
 * ringbuf.js moves element runs, not records, so a record is framed the only safe way it
 * allows: length and payload copied into a scratch buffer and pushed at once (two pushes would
 * let the consumer see a length without its payload), then popped into a buffer of the
 * consumer's (a payload may wrap, so it cannot be handed out in place).
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { RingBuffer } from 'ringbuf.js';
import { createRingBuffer, RingReader, RingWriter } from '../../src/rings/ring.js';
import { toolArgs } from '../lib/cli.js';

const RING_BYTES = 1 << 20;
const BURST = 64;

interface Writer {
  write(payload: Uint8Array): boolean;
}
interface Reader {
  /** Reads one record and returns its length (-1 when empty); `sink` sees the payload view. */
  read(sink: (view: Uint8Array) => void): number;
}

function ours(sab: SharedArrayBuffer): { writer: () => Writer; reader: () => Reader } {
  return {
    writer: () => {
      const w = new RingWriter(sab);
      return { write: (p) => w.tryWrite(p) };
    },
    reader: () => {
      const r = new RingReader(sab);
      return {
        read(sink) {
          if (!r.next()) return -1;
          sink(r.bytes.subarray(r.offset, r.offset + r.length));
          return r.length;
        },
      };
    },
  };
}

function ringbufjs(sab: SharedArrayBuffer): { writer: () => Writer; reader: () => Reader } {
  return {
    writer: () => {
      const rb = new RingBuffer(sab, Uint8Array);
      const scratch = new Uint8Array(64 * 1024);
      const view = new DataView(scratch.buffer);
      return {
        write(p) {
          const total = 4 + p.byteLength;
          if (rb.available_write() < total) return false;
          view.setUint32(0, p.byteLength, true);
          scratch.set(p, 4);
          rb.push(scratch, total);
          return true;
        },
      };
    },
    reader: () => {
      const rb = new RingBuffer(sab, Uint8Array);
      const header = new Uint8Array(4);
      const headerView = new DataView(header.buffer);
      const payload = new Uint8Array(64 * 1024);
      return {
        read(sink) {
          if (rb.available_read() < 4) return -1;
          rb.pop(header, 4);
          const length = headerView.getUint32(0, true);
          rb.pop(payload, length);
          sink(payload.subarray(0, length));
          return length;
        },
      };
    },
  };
}

const IMPLEMENTATIONS = {
  ours: { make: ours, storage: () => createRingBuffer(RING_BYTES) },
  'ringbuf.js': { make: ringbufjs, storage: () => RingBuffer.getStorageForCapacity(RING_BYTES, Uint8Array) },
};
type Name = keyof typeof IMPLEMENTATIONS;

let checksum = 0;
const sink = (view: Uint8Array): void => {
  checksum = (checksum + view[0]! + view[view.length - 1]!) | 0;
};

function payloadOf(size: number): Uint8Array {
  return Uint8Array.from({ length: size }, (_, i) => i & 0xff);
}

function singleThread(name: Name, size: number, records: number): number {
  const impl = IMPLEMENTATIONS[name];
  const ring = impl.make(impl.storage());
  const writer = ring.writer();
  const reader = ring.reader();
  const payload = payloadOf(size);
  const started = process.hrtime.bigint();
  for (let done = 0; done < records; done += BURST) {
    for (let i = 0; i < BURST; i++) if (!writer.write(payload)) throw new Error('ring full in a burst');
    for (let i = 0; i < BURST; i++) if (reader.read(sink) !== size) throw new Error('lost a record');
  }
  return Number(process.hrtime.bigint() - started) / records;
}

async function crossThread(name: Name, size: number, records: number): Promise<number> {
  const impl = IMPLEMENTATIONS[name];
  const storage = impl.storage();
  const reader = impl.make(storage).reader();
  const worker = new Worker(new URL(import.meta.url), { workerData: { name, storage, size, records } });
  await new Promise((resolve) => worker.once('online', resolve));
  const started = process.hrtime.bigint();
  let got = 0;
  while (got < records) if (reader.read(sink) >= 0) got++;
  const elapsed = Number(process.hrtime.bigint() - started) / records;
  await new Promise((resolve) => worker.once('exit', resolve));
  return elapsed;
}

function produce(): void {
  const { name, storage, size, records } = workerData as { name: Name; storage: SharedArrayBuffer; size: number; records: number };
  const writer = IMPLEMENTATIONS[name].make(storage).writer();
  const payload = payloadOf(size);
  for (let sent = 0; sent < records; ) if (writer.write(payload)) sent++;
  parentPort!.close();
}

async function main(): Promise<void> {
  const { records, sizes } = toolArgs({
    command: 'npm run bench:ring --',
    about: 'Our SPSC record ring against ringbuf.js, in one thread and across two: nanoseconds per record and records a second per payload size. JSON on stdout.',
    options: {
      records: { type: 'int', default: 2_000_000, min: 10, help: 'records per measurement' },
      sizes: { type: 'ints', default: '64,256,1024', min: 1, help: 'payload sizes in bytes' },
    },
  });
  const results: Array<Record<string, unknown>> = [];
  for (const size of sizes) {
    for (const mode of ['single-thread', 'cross-thread'] as const) {
      const row: Record<string, unknown> = { size, mode };
      for (const name of Object.keys(IMPLEMENTATIONS) as Name[]) {
        // Warm-up pass so both are measured optimised.
        if (mode === 'single-thread') singleThread(name, size, records / 10);
        else await crossThread(name, size, records / 10);
        const ns = mode === 'single-thread' ? singleThread(name, size, records) : await crossThread(name, size, records);
        row[name] = { nsPerRecord: Math.round(ns * 10) / 10, recordsPerSecond: Math.round(1e9 / ns) };
        process.stderr.write(`${mode} ${size} B ${name}: ${ns.toFixed(1)} ns/record\n`);
      }
      const a = (row.ours as { nsPerRecord: number }).nsPerRecord;
      const b = (row['ringbuf.js'] as { nsPerRecord: number }).nsPerRecord;
      row.speedupVsRingbufJs = Math.round((b / a) * 100) / 100;
      results.push(row);
    }
  }
  console.log(JSON.stringify({ benchmark: 'ring', node: process.version, records, ringBytes: RING_BYTES, results, checksum }, null, 2));
}

if (isMainThread) void main();
else produce();

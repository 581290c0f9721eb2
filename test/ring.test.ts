import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { LinkReader } from '../src/link/reader.js';
import { createDoorbells, DoorbellListener } from '../src/rings/doorbell.js';
import { createRingBuffer, HEADER_BYTES, largestRecord, READ_INDEX, RingReader, RingWriter, WRITE_INDEX } from '../src/rings/ring.js';

const bytesOf = (reader: RingReader): number[] => [...reader.bytes.subarray(reader.offset, reader.offset + reader.length)];

describe('SPSC ring', () => {
  test('its index cells are lock-free Int32 atomics', () => {
    assert.ok(Atomics.isLockFree(4));
  });

  test('records come out in order, byte for byte, across many wrap-arounds', () => {
    const buffer = createRingBuffer(1024);
    const writer = new RingWriter(buffer);
    const reader = new RingReader(buffer);
    for (let seq = 0; seq < 5000; seq++) {
      const record = Uint8Array.from({ length: 1 + (seq % 300) }, (_, i) => (seq + i) & 0xff);
      assert.ok(writer.tryWrite(record), `record ${seq} fits an empty ring`);
      assert.ok(reader.next());
      assert.deepEqual(bytesOf(reader), [...record]);
      assert.equal(reader.next(), false);
    }
  });

  test('a record that would cross the end starts again at 0 and stays contiguous', () => {
    const buffer = createRingBuffer(1024);
    const writer = new RingWriter(buffer);
    const reader = new RingReader(buffer);
    assert.ok(writer.tryWrite(new Uint8Array(400)));
    assert.ok(writer.tryWrite(new Uint8Array(400))); // the next record would start at 808
    assert.ok(reader.next());
    assert.ok(reader.next());
    reader.release();
    const record = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff);
    assert.ok(writer.tryWrite(record));
    assert.ok(reader.next());
    assert.equal(reader.offset, 4, 'the payload starts right after its length at offset 0');
    assert.deepEqual(bytesOf(reader), [...record]);
  });

  test('a full ring refuses a write, loses nothing, and accepts again once read', () => {
    const buffer = createRingBuffer(1024);
    const writer = new RingWriter(buffer);
    const reader = new RingReader(buffer);
    let written = 0;
    while (writer.tryWrite(Uint8Array.of(written & 0xff, 1, 2, 3))) written++;
    assert.equal(written, 1024 / 8, 'every byte used: 4-byte length + 4-byte payload each');
    assert.equal(writer.tryWrite(Uint8Array.of(9)), false);
    for (let i = 0; i < written; i++) {
      assert.ok(reader.next());
      assert.equal(reader.bytes[reader.offset], i & 0xff);
    }
    assert.equal(reader.next(), false);
    assert.ok(writer.tryWrite(Uint8Array.of(7)));
  });

  test('a record is not overwritten while the reader still holds it', () => {
    const buffer = createRingBuffer(1024);
    const writer = new RingWriter(buffer);
    const reader = new RingReader(buffer);
    assert.ok(writer.tryWrite(new Uint8Array(500).fill(1)));
    assert.ok(reader.next()); // held, not yet released
    assert.equal(writer.tryWrite(new Uint8Array(600)), false);
    assert.ok(reader.bytes.subarray(reader.offset, reader.offset + 500).every((b) => b === 1));
  });

  test('a payload larger than half the ring is refused outright; largestRecord() says where the line is', () => {
    const writer = new RingWriter(createRingBuffer(1024));
    assert.equal(writer.reserve(600), -1);
    assert.equal(writer.maxPayload, 508);
    assert.equal(largestRecord(1024), 508);
    assert.equal(largestRecord(1000), 508, 'of the ring createRingBuffer() makes: rounded up to a power of two');
    assert.ok(writer.reserve(509) < 0 && writer.reserve(508) >= 0);
  });

  test('a restarted consumer can discard what its predecessor left', () => {
    const buffer = createRingBuffer(1024);
    const writer = new RingWriter(buffer);
    writer.tryWrite(Uint8Array.of(1));
    const reader = new RingReader(buffer);
    reader.discardAll();
    assert.equal(reader.next(), false);
    writer.tryWrite(Uint8Array.of(2));
    assert.ok(reader.next());
    assert.equal(reader.bytes[reader.offset], 2);
  });

  test('a catch-up reads what was written before it, across wrap-arounds, and nothing written during it', () => {
    const buffer = createRingBuffer(1024);
    const writer = new RingWriter(buffer);
    // Records as the link has them: a kind byte, then MessagePack fields (0x90: none).
    const record = (kind: number): boolean => writer.tryWrite(Uint8Array.of(kind, 0x90));
    const seen: number[] = [];
    const link = new LinkReader(
      buffer,
      (kind) => {
        seen.push(kind);
        if (kind === 1) assert.ok(record(2)); // a producer that goes on writing meanwhile
      },
      false,
    );
    for (let round = 0; round < 300; round++) {
      for (let i = 0; i < 5; i++) assert.ok(record(1));
      seen.length = 0;
      assert.equal(link.catchUp(), seen.length);
      // Round 0 finds the five it wrote; each later one also the five written during the one before.
      assert.deepEqual(seen, round === 0 ? [1, 1, 1, 1, 1] : [2, 2, 2, 2, 2, 1, 1, 1, 1, 1], `round ${round}`);
    }
  });

  test('the header keeps the two indices, and the data, on separate 64-byte cache lines', () => {
    const writeByte = WRITE_INDEX * 4;
    const readByte = READ_INDEX * 4;
    assert.equal(Math.floor(writeByte / 64) === Math.floor(readByte / 64), false);
    assert.ok(HEADER_BYTES >= (Math.floor(Math.max(writeByte, readByte) / 64) + 1) * 64);
  });

  test('200,000 records cross from a producer thread intact and in order, woken by the doorbell', async () => {
    const count = 200_000;
    const ring = createRingBuffer(64 * 1024);
    const doorbells = createDoorbells(1);
    const reader = new RingReader(ring);
    let expected = 0;
    let corrupt = 0;
    const done = new Promise<void>((resolve) => {
      const listener = new DoorbellListener(doorbells, 0, () => {
        let budget = 10_000;
        while (budget-- > 0 && reader.next()) {
          const view = new DataView(reader.bytes.buffer, reader.bytes.byteOffset + reader.offset, reader.length);
          if (view.getUint32(0, true) !== expected) corrupt++;
          if (reader.length !== 4 + ((expected * 7919) % 1000)) corrupt++;
          for (let i = 4; i < reader.length; i += 97) if (reader.bytes[reader.offset + i] !== ((expected + i) & 0xff)) corrupt++;
          expected++;
        }
        reader.release();
        if (expected === count) {
          listener.stop();
          resolve();
          return false;
        }
        return budget <= 0;
      });
      listener.start();
    });
    // Keep this thread alive while it waits: a pending waitAsync alone does not.
    const keepAlive = setInterval(() => {}, 1000);
    const worker = new Worker(new URL('./fixtures/ring-producer.js', import.meta.url), { workerData: { ring, doorbells, count } });
    const report = new Promise<{ full: number }>((resolve) => worker.once('message', resolve));
    await done;
    clearInterval(keepAlive);
    await report;
    assert.equal(expected, count);
    assert.equal(corrupt, 0);
  });

  test('three producers that write a record at a time, with pauses, wake a sleeping consumer for every one', async () => {
    const count = 4000;
    const rings = [0, 1, 2].map(() => createRingBuffer(16 * 1024));
    const doorbells = createDoorbells(1);
    const readers = rings.map((ring) => new RingReader(ring));
    const next = rings.map(() => 0);
    let outOfOrder = 0;
    let listener: DoorbellListener | null = null;
    const done = new Promise<void>((resolve) => {
      listener = new DoorbellListener(doorbells, 0, () => {
        readers.forEach((reader, i) => {
          while (reader.next()) {
            if (new DataView(reader.bytes.buffer, reader.bytes.byteOffset + reader.offset, 4).getUint32(0, true) !== next[i]) outOfOrder++;
            next[i]!++;
          }
          reader.release();
        });
        if (next.every((n) => n === count)) resolve();
        return false;
      });
      listener.start();
    });
    const keepAlive = setInterval(() => {}, 1000);
    const workers = rings.map((ring, i) => new Worker(new URL('./fixtures/sporadic-producer.js', import.meta.url), { workerData: { ring, doorbells, count, seed: i + 1 } }));
    const finished = Promise.all(workers.map((w) => new Promise((resolve) => w.once('message', resolve))));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), 20_000)));
    const outcome = await Promise.race([done.then(() => 'all read' as const), late]);
    clearTimeout(timer);
    clearInterval(keepAlive);
    listener!.stop();
    // A producer whose records are never read spins on a full ring: it is stopped, not awaited.
    if (outcome === 'all read') await finished;
    else await Promise.all(workers.map((w) => w.terminate()));
    assert.equal(outcome, 'all read', `read ${next.join(', ')} of ${count} each`);
    assert.equal(outOfOrder, 0);
  });
});

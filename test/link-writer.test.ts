import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { QueuedRingWriter, type WriteRefusal } from '../src/link/queued-writer.js';
import { createDoorbells, DoorbellRinger } from '../src/rings/doorbell.js';
import { createRingBuffer, RingReader } from '../src/rings/ring.js';

/** A writer on a fresh 1 KiB ring (records of at most 508 bytes), the ring's reader, and the refusals it reported. */
function setup(maxBacklog = Infinity): { writer: QueuedRingWriter; read: () => number[]; refusals: Array<[WriteRefusal, number, boolean]> } {
  const buffer = createRingBuffer(1024);
  const refusals: Array<[WriteRefusal, number, boolean]> = [];
  const writer = new QueuedRingWriter(buffer, new DoorbellRinger(createDoorbells(1)), 0, { onRefused: (code, bytes, first) => refusals.push([code, bytes, first]) }, maxBacklog);
  const reader = new RingReader(buffer);
  /** The first byte of each record read, in order. */
  const read = (): number[] => {
    const got: number[] = [];
    while (reader.next()) got.push(reader.bytes[reader.offset]!);
    reader.release();
    return got;
  };
  return { writer, read, refusals };
}

const record = (tag: number, bytes: number): Uint8Array => new Uint8Array(bytes).fill(tag);

/** Resolves once the writer's retry timer has had the chance to flush. */
const turn = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 10));

describe('the queued ring writer', () => {
  test('writeSoon rings the consumer once at the end of the turn for all its records; a write() meanwhile rings at once, and not again', async () => {
    const buffer = createRingBuffer(1024);
    let rings = 0;
    const writer = new QueuedRingWriter(buffer, { ring: () => rings++ } as unknown as DoorbellRinger, 0);
    const reader = new RingReader(buffer);
    for (const tag of [1, 2, 3]) assert.equal(writer.writeSoon(record(tag, 10)), null);
    assert.equal(rings, 0, 'not yet');
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(rings, 1, 'one ring for the three');
    const got: number[] = [];
    while (reader.next()) got.push(reader.bytes[reader.offset]!);
    reader.release();
    assert.deepEqual(got, [1, 2, 3]);
    writer.writeSoon(record(4, 10));
    writer.write(record(5, 10));
    assert.equal(rings, 2, 'write() rang at once, for both');
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(rings, 2, 'the turn owed no more');
    writer.stop();
  });

  test('a record the ring can never carry is refused at once with E_TOO_LARGE, reported once, and the records behind it still arrive', async () => {
    const { writer, read, refusals } = setup();
    assert.equal(writer.maxRecord, 508);
    assert.equal(writer.write(record(1, 500)), null);
    assert.equal(writer.write(record(2, 500)), null, 'the ring is full');
    assert.equal(writer.write(record(3, 500)), null, 'waits');
    assert.equal(writer.write(record(4, 509)), 'E_TOO_LARGE', 'refused while others wait');
    assert.equal(writer.write(record(5, 100)), null);
    assert.deepEqual(read(), [1, 2]);
    await turn();
    assert.deepEqual(read(), [3, 5], 'nothing waits behind the refused record');
    assert.equal(writer.write(record(6, 4096)), 'E_TOO_LARGE', 'refused with an empty overflow too');
    assert.equal(writer.backlog, 0);
    assert.deepEqual(refusals, [['E_TOO_LARGE', 509, true], ['E_TOO_LARGE', 4096, false]]);
    writer.stop();
  });

  test('past its bound the overflow refuses with E_OVERLOADED, unless the caller allows more; the oldest waiting record is dated', async () => {
    const { writer, read, refusals } = setup(500);
    const before = Date.now();
    assert.equal(writer.write(record(1, 500)), null);
    assert.equal(writer.write(record(2, 500)), null, 'the ring is full');
    assert.equal(writer.oldestQueuedAt, 0, 'nothing waits yet');
    assert.equal(writer.write(record(3, 300)), null, 'waits');
    assert.ok(writer.oldestQueuedAt >= before);
    assert.equal(writer.write(record(4, 300)), 'E_OVERLOADED', '600 bytes would wait');
    assert.equal(writer.write(record(5, 300), 1000), null, 'a record the caller cannot lose may go over');
    assert.equal(writer.backlog, 600);
    assert.deepEqual(refusals, [['E_OVERLOADED', 300, true]]);
    assert.deepEqual(read(), [1, 2]);
    await turn();
    assert.deepEqual(read(), [3, 5]);
    assert.equal(writer.backlog, 0);
    assert.equal(writer.oldestQueuedAt, 0);
    writer.stop();
  });
});

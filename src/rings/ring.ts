/**
 * A single-producer single-consumer ring of variable-length records over a SharedArrayBuffer.
 *
 * Layout (byte offsets):
 *   0    WRITE_INDEX  u32, bytes ever written (wraps at 2^32); stored only by the producer
 *   64   READ_INDEX   u32, bytes ever consumed; stored only by the consumer
 *   128  data        `capacity` bytes, a power of two
 * The two indices sit on separate cache lines so the threads do not false-share.
 *
 * A record is a u32 length followed by its payload, padded to 4 bytes. Records never wrap:
 * one that would cross the end is preceded by a PAD marker and starts again at 0, so the
 * consumer can hand the payload straight to uWS as a view, without a copy.
 *
 * Why not ringbuf.js: it moves element runs, not records, so a record needs either two pushes
 * (the consumer could see a length without its payload) or a copy into a scratch buffer first,
 * and a payload that wraps must be copied out again. tools/bench/ring.ts measures both.
 */
export const WRITE_INDEX = 0;
export const READ_INDEX = 16; // in Int32 units: byte 64
export const HEADER_BYTES = 128;
const PAD = 0xffffffff;
const LENGTH_BYTES = 4;

export function ringBytesFor(capacity: number): number {
  return HEADER_BYTES + roundUpPowerOfTwo(capacity);
}

export function roundUpPowerOfTwo(n: number): number {
  let p = 1024;
  while (p < n) p *= 2;
  return p;
}

export function createRingBuffer(capacity: number): SharedArrayBuffer {
  return new SharedArrayBuffer(ringBytesFor(capacity));
}

/**
 * The largest record payload a ring made by createRingBuffer(capacity) can ever take: half its
 * data region, less the length word. A bigger one would wait for room forever, and every
 * record behind it too.
 */
export function largestRecord(capacity: number): number {
  return roundUpPowerOfTwo(capacity) / 2 - LENGTH_BYTES;
}

class RingBase {
  protected readonly header: Int32Array;
  protected readonly view: DataView;
  /** The data region; record payloads are read and written through it. */
  readonly bytes: Uint8Array;
  readonly capacity: number;
  protected readonly mask: number;

  constructor(readonly buffer: SharedArrayBuffer) {
    this.header = new Int32Array(buffer, 0, HEADER_BYTES / 4);
    this.capacity = buffer.byteLength - HEADER_BYTES;
    if (this.capacity <= 0 || (this.capacity & (this.capacity - 1)) !== 0) {
      throw new RangeError(`ring data region must be a power of two, got ${this.capacity}`);
    }
    this.mask = this.capacity - 1;
    this.bytes = new Uint8Array(buffer, HEADER_BYTES, this.capacity);
    this.view = new DataView(buffer, HEADER_BYTES, this.capacity);
  }

  /** Bytes written but not yet consumed. */
  used(): number {
    return (Atomics.load(this.header, WRITE_INDEX) - Atomics.load(this.header, READ_INDEX)) >>> 0;
  }
}

export class RingWriter extends RingBase {
  /** Producer-local copy of WRITE_INDEX, ahead of it while a record is reserved. */
  private write: number;
  private reserved = -1;
  /**
   * READ_INDEX as last seen. The consumer only ever moves it forward, so free space computed
   * from it is a safe underestimate; it is reloaded only when that says "full", which keeps
   * the consumer's cache line out of the producer's way on most writes.
   */
  private cachedRead: number;

  constructor(buffer: SharedArrayBuffer) {
    super(buffer);
    // A restarted producer resumes from what its predecessor published; a record it had
    // reserved but not published is simply never seen.
    this.write = Atomics.load(this.header, WRITE_INDEX) >>> 0;
    this.cachedRead = Atomics.load(this.header, READ_INDEX) >>> 0;
  }

  /** Largest payload that can ever fit (largestRecord()). */
  get maxPayload(): number {
    return largestRecord(this.capacity);
  }

  /**
   * Reserves room for a payload of `length` bytes and returns its offset in `bytes`, or -1
   * when the ring is too full right now. Fill the payload, then call publish().
   */
  reserve(length: number): number {
    const needed = LENGTH_BYTES + ((length + 3) & ~3);
    if (needed > this.capacity / 2) return -1;
    const at = this.write & this.mask;
    const tail = this.capacity - at;
    // Room for the record, plus the padded tail when it has to start again at 0.
    const room = needed <= tail ? needed : tail + needed;
    let free = this.capacity - ((this.write - this.cachedRead) >>> 0);
    if (room > free) {
      this.cachedRead = Atomics.load(this.header, READ_INDEX) >>> 0;
      free = this.capacity - ((this.write - this.cachedRead) >>> 0);
    }
    if (needed <= tail) {
      if (needed > free) return -1;
      this.view.setUint32(at, length, true);
      this.reserved = (this.write + needed) >>> 0;
      return at + LENGTH_BYTES;
    }
    // Would cross the end: pad out the tail and start at 0.
    if (tail + needed > free) return -1;
    this.view.setUint32(at, PAD, true);
    this.view.setUint32(0, length, true);
    this.reserved = (this.write + tail + needed) >>> 0;
    return LENGTH_BYTES;
  }

  /** Makes the reserved record visible to the consumer. */
  publish(): void {
    this.write = this.reserved;
    Atomics.store(this.header, WRITE_INDEX, this.write | 0);
  }

  /** Copies `payload` in as one record; false when the ring is too full. */
  tryWrite(payload: Uint8Array): boolean {
    const at = this.reserve(payload.byteLength);
    if (at < 0) return false;
    this.bytes.set(payload, at);
    this.publish();
    return true;
  }
}

export class RingReader extends RingBase {
  private read: number;
  /** WRITE_INDEX as last seen; reloaded only when everything up to it has been read. */
  private cachedWrite: number;
  /** True while the record returned by next() has not been released. */
  private holding = false;
  /** Offset in `bytes` and length of the record returned by the last next(). */
  offset = 0;
  length = 0;

  constructor(buffer: SharedArrayBuffer) {
    super(buffer);
    this.read = Atomics.load(this.header, READ_INDEX) >>> 0;
    this.cachedWrite = this.read;
  }

  /**
   * Moves to the next record; false when the ring is empty. The record stays valid (the
   * producer cannot overwrite it) until the following next(), release() or discardAll().
   */
  next(): boolean {
    this.release();
    if (this.cachedWrite === this.read) {
      this.cachedWrite = Atomics.load(this.header, WRITE_INDEX) >>> 0;
      if (this.cachedWrite === this.read) return false;
    }
    let at = this.read & this.mask;
    let length = this.view.getUint32(at, true);
    if (length === PAD) {
      this.read = (this.read + this.capacity - at) >>> 0;
      at = 0;
      length = this.view.getUint32(0, true);
    }
    this.offset = at + LENGTH_BYTES;
    this.length = length;
    this.read = (this.read + LENGTH_BYTES + ((length + 3) & ~3)) >>> 0;
    this.holding = true;
    return true;
  }

  /** WRITE_INDEX now: the position after everything written so far (bytes, wraps at 2^32). */
  written(): number {
    return Atomics.load(this.header, WRITE_INDEX) >>> 0;
  }

  /** Whether every record written before position `mark` (a written()) has been read. */
  readPast(mark: number): boolean {
    return ((this.read - mark) | 0) >= 0;
  }

  /** Releases the current record without waiting for the next call to next(). */
  release(): void {
    if (!this.holding) return;
    this.holding = false;
    Atomics.store(this.header, READ_INDEX, this.read | 0);
  }

  /** Drops everything written so far: a restarted consumer must not replay stale records. */
  discardAll(): void {
    this.holding = false;
    this.read = this.cachedWrite = Atomics.load(this.header, WRITE_INDEX) >>> 0;
    Atomics.store(this.header, READ_INDEX, this.read | 0);
  }
}

/** A third thread's look at a ring (the primary's link monitor): bytes unread, and how far its consumer has read. */
export class RingProbe extends RingBase {
  /** Bytes ever consumed (wraps at 2^32): it moves whenever the consumer releases records. */
  readIndex(): number {
    return Atomics.load(this.header, READ_INDEX) >>> 0;
  }
}

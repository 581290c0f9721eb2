/**
 * The documents the primary renders (/metrics text, the /stats additions, /alerts,
 * /stats/histograms), in shared memory so that any shard answers a scrape by copying bytes
 * out: no rendering on the shard.
 *
 * Rendered on demand, from the figures of the last interval (the primary's "view", numbered
 * VIEW): a shard asked for a document that was not rendered from the current view sets its
 * WANTED flag, wakes the primary (a METRICS_WANTED record on its ring) and answers once the
 * document's RENDERED view has caught up. Rendered every interval whether read or not, /metrics
 * alone allocated about 200 KB a second on the primary's loop (its scavenges share a core with a
 * shard when pinned) and cost V8 a 180 ms optimising compile two minutes after start.
 *
 * Layout: an Int32 header, then per document two halves of `capacity` bytes each.
 *   header, per document d (stride 6): VERSION, LENGTH of half 0, LENGTH of half 1, WANTED,
 *   RENDERED (the view the current version was rendered from); after them VIEW, the latest view.
 *   data: document d, half h at HEADER_BYTES + offset(d) + h * capacity(d)
 * The one writer (primary) fills the half that VERSION does not point at (half = VERSION & 1
 * is current), stores its length, then increments VERSION. A reader copies the current half
 * and checks VERSION again: if it moved by 2 or more, the writer may have overwritten the half
 * being copied, and the reader copies again (it takes microseconds).
 */
import { Buffer } from 'node:buffer';

export const SnapshotDoc = { METRICS: 0, STATS: 1, ALERTS: 2, HISTOGRAMS: 3 } as const;
export type SnapshotDocValue = (typeof SnapshotDoc)[keyof typeof SnapshotDoc];

const DOCS = 4;
const STRIDE = 6;
const VERSION = 0;
const LENGTH = 1;
const WANTED = 3;
const RENDERED = 4;
const VIEW = DOCS * STRIDE;
const HEADER_BYTES = 128;
const READ_ATTEMPTS = 8;

/** The room one raised/cleared event takes in /alerts at most (about 120 bytes: fixed names, numbers, a time). */
export const ALERT_EVENT_BYTES = 256;

/**
 * Bytes per half of each document, for a server of `shards` shards (per-shard lines grow with
 * them) keeping `alertHistory` events for /alerts (monitoring.alerts.history).
 */
export function snapshotCapacities(shards: number, alertHistory: number): number[] {
  return [256 * 1024 + shards * 16 * 1024, 64 * 1024 + shards * 8 * 1024, 16 * 1024 + alertHistory * ALERT_EVENT_BYTES, 256 * 1024];
}

export function createSnapshotBuffer(shards: number, alertHistory: number): SharedArrayBuffer {
  const total = snapshotCapacities(shards, alertHistory).reduce((sum, capacity) => sum + 2 * capacity, 0);
  return new SharedArrayBuffer(HEADER_BYTES + total);
}

class SnapshotArea {
  protected readonly header: Int32Array;
  protected readonly bytes: Uint8Array;
  protected readonly capacity: number[];
  protected readonly offset: number[] = [];

  constructor(buffer: SharedArrayBuffer, shards: number, alertHistory: number) {
    this.header = new Int32Array(buffer, 0, HEADER_BYTES / 4);
    this.bytes = new Uint8Array(buffer, HEADER_BYTES);
    this.capacity = snapshotCapacities(shards, alertHistory);
    let at = 0;
    for (const capacity of this.capacity) {
      this.offset.push(at);
      at += 2 * capacity;
    }
    if (at !== this.bytes.byteLength || VIEW >= this.header.length) throw new RangeError('snapshot buffer does not match its shard count and alert history');
  }

  protected half(doc: number, half: number): number {
    return this.offset[doc]! + half * this.capacity[doc]!;
  }

  /** The latest view's number (0: none yet). */
  view(): number {
    return Atomics.load(this.header, VIEW);
  }

  /** The view document `doc` was last rendered from (0: never). */
  renderedView(doc: SnapshotDocValue): number {
    return Atomics.load(this.header, doc * STRIDE + RENDERED);
  }
}

export class SnapshotWriter extends SnapshotArea {
  private readonly encoder = new TextEncoder();

  /** A new view (the interval's figures) is the one to render from. */
  setView(view: number): void {
    Atomics.store(this.header, VIEW, view);
  }

  /**
   * Publishes `text`, rendered from `view`, as document `doc`; false (the previous version
   * stays) when it does not fit. Either way the document counts as rendered from `view`, so
   * that no reader waits for a render that cannot come.
   */
  write(doc: SnapshotDocValue, text: string, view: number): boolean {
    const version = Atomics.load(this.header, doc * STRIDE + VERSION);
    const half = (version + 1) & 1;
    const start = this.half(doc, half);
    const target = this.bytes.subarray(start, start + this.capacity[doc]!);
    const { read, written } = this.encoder.encodeInto(text, target);
    const fits = read === text.length;
    if (fits) {
      Atomics.store(this.header, doc * STRIDE + LENGTH + half, written);
      Atomics.add(this.header, doc * STRIDE + VERSION, 1);
    }
    Atomics.store(this.header, doc * STRIDE + RENDERED, view);
    return fits;
  }

  /** Whether a shard asked for `doc` since the last call (and forgets that it did). */
  takeWanted(doc: SnapshotDocValue): boolean {
    return Atomics.exchange(this.header, doc * STRIDE + WANTED, 0) !== 0;
  }
}

export class SnapshotReader extends SnapshotArea {
  /** Whether `doc` holds the latest view's figures (false before the first view). */
  isCurrent(doc: SnapshotDocValue): boolean {
    const view = this.view();
    return view !== 0 && this.renderedView(doc) >= view;
  }

  /** Tells the writer that `doc` is wanted, rendered from the latest view. */
  want(doc: SnapshotDocValue): void {
    Atomics.store(this.header, doc * STRIDE + WANTED, 1);
  }

  /** The current bytes of document `doc` (a copy), or null before its first write. */
  read(doc: SnapshotDocValue): Buffer | null {
    for (let attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
      const version = Atomics.load(this.header, doc * STRIDE + VERSION);
      if (version === 0) return null;
      const half = version & 1;
      const length = Atomics.load(this.header, doc * STRIDE + LENGTH + half);
      const start = this.half(doc, half);
      const copy = Buffer.from(this.bytes.subarray(start, start + length));
      if (Atomics.load(this.header, doc * STRIDE + VERSION) - version < 2) return copy;
    }
    return null;
  }
}

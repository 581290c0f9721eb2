/**
 * A thread's codec settings and the one decision it makes: is this work large enough to go to
 * the pool (src/codec/pool.ts), and is there room? Small work, and all work while the pool is
 * full or off, runs inline with the same functions (src/codec/tasks.ts); so does work the pool
 * failed on (its thread died), which was dropped before: a connection then missed that frame (a
 * recovering join's replay, with `recovered: true` after it). Only a client frame whose bytes
 * had been moved to the thread that died cannot be: its sender gets E_INTERNAL.
 */
import { renderDeadLetters } from '../broker/dead-letter-view.js';
import type { Config } from '../config/schema.js';
import type { Deflate } from '../protocol/wire.js';
import type { DeadLetter } from '../store/messages.js';
import { deflateLz4, deflateLz4Many } from './lz4.js';
import { CodecPool } from './pool.js';
import { prepare, runTask, transcode, type CodecTask, type PrepareResult, type PrepareTask } from './tasks.js';

export interface CodecSettings {
  /** LZ4 for binary frames of at least lz4Threshold bytes (performance.enable_compression). */
  compression: boolean;
  lz4Threshold: number;
  /** A broadcast to at least this many recipients is compressed with LZ4 HC (0: never; unset: 0). */
  hcMinRecipients?: number;
  /** Work on at least this many bytes goes to the pool when it has room. */
  offloadThreshold: number;
  poolSize: number;
  queueLimit: number;
  /** The pool threads' nice increment; unset: 0. */
  poolNice?: number;
}

/** The settings of `performance` config (one mapping for the primary's pool and every shard's). */
export function codecSettings(performance: Config['websocket']['performance']): CodecSettings {
  return {
    compression: performance.enable_compression,
    lz4Threshold: performance.lz4_threshold,
    hcMinRecipients: performance.lz4_hc_min_recipients,
    offloadThreshold: performance.codec_offload_threshold,
    poolSize: performance.codec_pool_size,
    queueLimit: performance.codec_queue_limit,
    poolNice: performance.codec_pool_nice,
  };
}

/** Where a task ran, for the counters. */
export interface CodecCounts {
  offloaded(): void;
  /** Large enough for the pool, which had no room: run inline. */
  inlineFull(): void;
}

export class Codec {
  readonly deflate: Deflate | null;
  /** Binary frames of at least this many bytes are compressed; Infinity with compression off. */
  readonly lz4Threshold: number;
  readonly offloadThreshold: number;
  private readonly hcMinRecipients: number;
  private readonly pool: CodecPool;

  constructor(settings: CodecSettings, private readonly counts: CodecCounts | null = null) {
    this.deflate = settings.compression ? deflateLz4 : null;
    this.lz4Threshold = settings.compression ? settings.lz4Threshold : Infinity;
    this.offloadThreshold = settings.poolSize === 0 ? Infinity : settings.offloadThreshold;
    this.hcMinRecipients = settings.hcMinRecipients ?? 0;
    this.pool = new CodecPool({ size: settings.poolSize, queueLimit: settings.queueLimit, nice: settings.poolNice });
  }

  /**
   * The LZ4 for a frame compressed once and sent to `recipients` connections: high
   * compression (up to HC_MAX_BYTES) from hcMinRecipients on: its CPU is spent once, its bytes
   * saved per recipient.
   */
  deflateFor(recipients: number): Deflate | null {
    if (this.deflate === null) return null;
    return this.hcMinRecipients > 0 && recipients >= this.hcMinRecipients ? deflateLz4Many : this.deflate;
  }

  /** Whether work on `bytes` bytes goes to the pool now (false when small, or the pool is full). */
  offloads(bytes: number): boolean {
    if (bytes < this.offloadThreshold) return false;
    if (this.pool.hasRoom()) return true;
    this.counts?.inlineFull();
    return false;
  }

  /** A server frame in JSON text as a binary frame: inline when small or the pool is full. */
  transcode(json: string): Uint8Array | Promise<Uint8Array> {
    const task = { kind: 'transcode', json, lz4Threshold: this.lz4Threshold } as const;
    // UTF-16 length: a lower bound of the UTF-8 bytes, close enough for the decision.
    if (!this.offloads(json.length)) return transcode(task);
    return this.run(task).then(
      (result) => (result.kind === 'transcode' ? result.frame : transcode(task)),
      () => transcode(task),
    );
  }

  /** A chunk of a dead-letter page, each letter as its item's JSON text: in the pool when its data is large. */
  renderDeadLetters(letters: readonly DeadLetter[]): string[] | Promise<string[]> {
    let bytes = 0;
    for (const letter of letters) bytes += letter.data.length;
    if (!this.offloads(bytes)) return renderDeadLetters(letters);
    return this.run({ kind: 'deadLetters', letters: [...letters] }).then(
      (result) => (result.kind === 'deadLetters' ? result.items : renderDeadLetters(letters)),
      () => renderDeadLetters(letters),
    );
  }

  /**
   * Decodes and prepares a large client frame in the pool (call offloads() first). Its bytes are
   * moved to the thread that takes it: if the pool fails it before (queued behind a thread that
   * died), they are still here and it is done inline; if after, it rejects.
   */
  prepare(task: Omit<PrepareTask, 'kind' | 'lz4Threshold'>): Promise<PrepareResult> {
    const full: PrepareTask = { kind: 'prepare', lz4Threshold: this.lz4Threshold, ...task };
    const bytes = task.bytes.byteLength;
    return this.run(full, [task.bytes.buffer as ArrayBuffer]).then(
      (result) => (result.kind === 'prepare' ? result : Promise.reject(new Error('codec pool answered another task'))),
      (err: unknown) => (full.bytes.byteLength === bytes ? prepare(full) : Promise.reject(err)),
    );
  }

  /** Tasks in the pool now. */
  get pending(): number {
    return this.pool.pending;
  }

  close(): Promise<void> {
    return this.pool.close();
  }

  private run(task: CodecTask, transfer: ArrayBuffer[] = []): Promise<ReturnType<typeof runTask>> {
    this.counts?.offloaded();
    return this.pool.run(task, transfer);
  }
}

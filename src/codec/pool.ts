/**
 * A thread's codec pool: piscina running workers/codec.ts, for the encoding work that must not
 * stall the thread's loop (src/codec/tasks.ts). Bounded: at most `queueLimit` tasks in flight
 * (running or queued); beyond that hasRoom() is false and the caller does the same work inline,
 * so a full pool slows the thread down but never drops or refuses anything.
 *
 * Threads start on first use and leave after a minute idle: a server that never sees a large
 * frame runs none. Each thread that uses one (every shard, the primary) has its own pool of
 * `size` threads. piscina itself is loaded on first use too: importing it cost every thread
 * tens of milliseconds of CPU at start-up.
 */
import type { Piscina } from 'piscina';
import type { CodecResult, CodecTask } from './tasks.js';

export interface CodecPoolOptions {
  /** Threads; 0: no pool, everything inline. */
  size: number;
  /** Tasks in flight at most. */
  queueLimit: number;
  /** Nice increment of the pool's threads (piscina applies it per thread, with @napi-rs/nice); unset: 0. */
  nice?: number;
  /** The threads' module (a file URL); unset: workers/codec.js. */
  worker?: string;
}

/** How long an idle pool thread lives. */
const IDLE_MS = 60_000;
const WORKER = new URL('../../workers/codec.js', import.meta.url).href;

export class CodecPool {
  private pool: Piscina<CodecTask, CodecResult> | null = null;
  private opening: Promise<Piscina<CodecTask, CodecResult>> | null = null;
  private inFlight = 0;
  private closed = false;

  constructor(private readonly options: CodecPoolOptions) {}

  /** Whether a task may go to the pool now. */
  hasRoom(): boolean {
    return this.options.size > 0 && !this.closed && this.inFlight < this.options.queueLimit;
  }

  /** Tasks running or queued. */
  get pending(): number {
    return this.inFlight;
  }

  /** Runs `task` on a pool thread; ask hasRoom() first. `transfer`: buffers of the task to move rather than copy. */
  run(task: CodecTask, transfer: ArrayBuffer[] = []): Promise<CodecResult> {
    this.inFlight++;
    const pool = this.pool;
    const runIn = (on: Piscina<CodecTask, CodecResult>): Promise<CodecResult> =>
      on.run(task, { transferList: transfer }).catch((err: unknown) => {
        this.retire(on);
        throw err;
      });
    // Tasks that come while piscina loads reach it in the order they came (then-callbacks run in order).
    const done = pool !== null ? runIn(pool) : this.open().then(runIn);
    return done.finally(() => this.inFlight--);
  }

  /** Ends the threads; tasks still running reject. */
  async close(): Promise<void> {
    this.closed = true;
    const opening = this.opening;
    this.opening = null;
    this.pool = null;
    const pool = opening === null ? null : await opening.catch(() => null);
    if (pool) await pool.close({ force: true });
  }

  /**
   * A task failed (its thread died: an out-of-memory, a native fault), or a thread did outside
   * one (see open()): the next task gets a new piscina, and this one is ended, which fails the
   * tasks queued in it. Left alone, they waited for ever: piscina replaces a dead thread only up
   * to minThreads (0 here), and starts one only when a task is added, so a connection's frames
   * behind them stalled until some other large frame came.
   */
  private retire(pool: Piscina<CodecTask, CodecResult>): void {
    if (this.pool !== pool) return;
    this.pool = null;
    this.opening = null;
    pool.close({ force: true }).catch(() => {});
  }

  private open(): Promise<Piscina<CodecTask, CodecResult>> {
    if (this.closed) return Promise.reject(new Error('the codec pool is closed'));
    return (this.opening ??= import('piscina').then(({ Piscina }) => {
      const pool = new Piscina<CodecTask, CodecResult>({
        filename: this.options.worker ?? WORKER,
        minThreads: 0,
        maxThreads: this.options.size,
        idleTimeout: IDLE_MS,
        // The bound is ours (queueLimit): piscina's own queue never refuses.
        maxQueue: Infinity,
        niceIncrement: this.options.nice ?? 0,
      });
      // A thread that failed outside a task (it could not start, or load its module): piscina
      // emits 'error', which with no listener threw in this thread and crashed the shard (every
      // connection closed 1012), and starts no other thread, so the tasks queued waited for ever.
      pool.on('error', () => this.retire(pool));
      // Closed while piscina loaded: close() ends this pool (it holds this promise), and the
      // tasks waiting for it reject, as on a closed pool.
      if (!this.closed) this.pool = pool;
      return pool;
    }));
  }
}

/**
 * The main thread's side of one scenario's loadgen threads: spawns them with their plans,
 * gathers what they post (connected, a tick a second, the final result, a fatal error) and
 * broadcasts the runner's decisions to all of them.
 */
import { Worker } from 'node:worker_threads';
import { deferred } from './promises.js';
import type { Counters, MainToWorker, WorkerPlan, WorkerResult, WorkerToMain } from './types.js';

const LOADGEN_ENTRY = new URL('../workers/loadgen.js', import.meta.url);

/** A thread's last tick: its running totals. */
export interface ThreadTick {
  counters: Counters;
  active: number;
  elu: number;
}

export class LoadgenThreads {
  private readonly workers: Worker[] = [];
  /** Each thread's last tick, null before its first. */
  readonly latest: Array<ThreadTick | null>;
  /** Each thread's final result, null until it reported. */
  readonly finals: Array<WorkerResult | null>;
  /** Every thread has connected its share of the scenario's connections. */
  readonly connected = deferred<void>();
  /** Every thread has handed in its result. */
  readonly finished = deferred<void>();
  private pendingIntervals: string[] = [];

  constructor(count: number, planFor: (workerIndex: number) => WorkerPlan) {
    this.latest = new Array<ThreadTick | null>(count).fill(null);
    this.finals = new Array<WorkerResult | null>(count).fill(null);
    let connectedCount = 0;
    let finalCount = 0;
    const failed = (err: Error): void => {
      this.finished.reject(err);
      this.connected.reject(err);
    };
    for (let i = 0; i < count; i++) {
      const w = new Worker(LOADGEN_ENTRY);
      this.workers.push(w);
      w.on('message', (m: WorkerToMain) => {
        switch (m.type) {
          case 'connected':
            if (++connectedCount === count) this.connected.resolve();
            break;
          case 'tick':
            this.latest[i] = { counters: m.counters, active: m.active, elu: m.elu };
            this.pendingIntervals.push(m.interval);
            break;
          case 'final':
            this.finals[i] = m.result;
            if (++finalCount === count) this.finished.resolve();
            break;
          case 'fatal':
            failed(new Error(`loadgen thread ${i}: ${m.message}`));
            break;
        }
      });
      w.on('error', failed);
      w.on('exit', (code) => {
        if (this.finals[i] === null) failed(new Error(`loadgen thread ${i} exited (code ${code}) before reporting`));
      });
      w.postMessage({ type: 'init', plan: planFor(i) } satisfies MainToWorker);
    }
  }

  broadcast(m: MainToWorker): void {
    for (const w of this.workers) w.postMessage(m);
  }

  /** The threads' per-second latency histograms posted since the last call. */
  takeIntervals(): string[] {
    const taken = this.pendingIntervals;
    this.pendingIntervals = [];
    return taken;
  }

  async terminate(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

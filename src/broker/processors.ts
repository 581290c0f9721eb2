/**
 * Processors: application functions registered per `data.type` that see a `pub`, `send` or
 * `any` before it is routed, and may change it, drop it (null) or throw (the broker then
 * dead-letters it). Sync or async alike; an async one that does not answer within its time
 * limit is failed as if it had thrown, and its late answer ignored.
 */
import { dataJsonOf } from './embedding-checks.js';
import type { Incoming } from './ids.js';

/** What a processor sees, and may return changed; `null` drops the message. */
export interface ProcessorMessage {
  kind: 'pub' | 'send' | 'any';
  from: string;
  /** `send`: the recipient. */
  to?: string;
  /** `pub` and `any`: the group. */
  group?: string;
  data: unknown;
  pri: number;
}
export type Processor = (message: ProcessorMessage) => ProcessorMessage | null | undefined | Promise<ProcessorMessage | null | undefined>;

export class Processors {
  private readonly byType = new Map<string, Processor>();
  /** The outcomes of processors still running (a promise not yet settled), with each one's time limit: answered by stop() if never. */
  private readonly running = new Map<ProcessorOutcome, NodeJS.Timeout | null>();

  /** `timeoutMs`: longest wait for an async processor's answer (delivery.processor_timeout); 0 = no limit. */
  constructor(private readonly timeoutMs: number) {}

  register(type: string, processor: Processor): void {
    this.byType.set(type, processor);
  }

  /** The registered `data.type` values: the shards detour only these through the broker. */
  types(): string[] {
    return [...this.byType.keys()];
  }

  has(type: string | null): type is string {
    return type !== null && this.byType.has(type);
  }

  /**
   * Passes `incoming` through the processor for `type` (sync or async): `outcome.pass` gets the
   * data (as JSON text) and pri it returned, or the message unchanged for undefined;
   * `outcome.drop` is called for null, `outcome.fail` with the reason when it threw or its
   * promise rejected.
   */
  run(type: string, incoming: Incoming, outcome: ProcessorOutcome): void {
    const processor = this.byType.get(type)!;
    const message = processorMessage(incoming);
    const named = `processor for type ${JSON.stringify(type)}`;
    const fail = (err: unknown): void => outcome.fail(`${named} threw: ${describe(err)}`);
    let out;
    try {
      out = processor(message);
    } catch (err) {
      return fail(err);
    }
    const finish = (result: unknown): void => {
      if (result === null) return outcome.drop();
      const changed = result === undefined ? message : (result as ProcessorMessage);
      let dataJson: string;
      let pri: number;
      try {
        // A BigInt, a cycle or nesting deeper than a frame's cannot be stored: the message cannot go on.
        dataJson = dataJsonOf(changed.data);
        pri = clampPri(changed.pri);
      } catch (err) {
        return outcome.fail(`${named} returned data that cannot be JSON: ${describe(err)}`);
      }
      outcome.pass(dataJson, pri);
    };
    // Any thenable: a promise library's, or another realm's (a vm context), is no `instanceof Promise` here.
    let then: unknown;
    try {
      then = (out as { then?: unknown } | null | undefined)?.then; // a getter may throw
    } catch (err) {
      return fail(err);
    }
    if (typeof then !== 'function') return finish(out);
    // What the outcome's own work throws must not escape: from a timer or as an unhandled
    // rejection it would end the process.
    const guarded = (answer: () => void): void => {
      try {
        answer();
      } catch (err) {
        try {
          outcome.fail(`${named} failed: ${describe(err)}`);
        } catch {
          // The sender cannot be answered either; the broker's own logs tell of the failure.
        }
      }
    };
    const settled = (answer: () => void): void => {
      const timer = this.running.get(outcome);
      if (timer === undefined) return; // answered by stop() or the time limit already
      if (timer !== null) clearTimeout(timer);
      this.running.delete(outcome);
      guarded(answer);
    };
    // Only an async processor gets a timer: a sync one has answered by now.
    const limit = this.timeoutMs;
    const late = (): void => settled(() => outcome.fail(`${named} did not answer within ${limit / 1000} s (delivery.processor_timeout)`));
    this.running.set(outcome, limit > 0 ? setTimeout(late, limit) : null);
    Promise.resolve(out).then(
      (result) => settled(() => finish(result)),
      (err: unknown) => settled(() => fail(err)),
    );
  }

  /** The server stops: every processor still running gets its message refused, `reason` given (the sender waits no longer). */
  stop(reason: string): void {
    for (const [outcome, timer] of this.running) {
      if (timer !== null) clearTimeout(timer);
      outcome.abandon(reason);
    }
    this.running.clear();
  }
}

export interface ProcessorOutcome {
  pass(dataJson: string, pri: number): void;
  drop(): void;
  fail(reason: string): void;
  /** The server stopped before the processor answered: nothing is stored or sent. */
  abandon(reason: string): void;
}

/** What a processor sees of `incoming`: its data parsed, its recipient named by kind. */
function processorMessage(incoming: Incoming): ProcessorMessage {
  const kind = incoming.target.startsWith('u:') ? 'send' : incoming.target.startsWith('g:') ? 'any' : 'pub';
  const recipient = kind === 'send' ? { to: incoming.target.slice(2) } : { group: incoming.group! };
  return { kind, from: incoming.from, ...recipient, data: JSON.parse(incoming.data), pri: incoming.pri };
}

/** What a processor threw, as text: whatever it threw (a null-prototype object has no toString). */
function describe(err: unknown): string {
  try {
    return err instanceof Error ? String(err.message) : String(err);
  } catch {
    try {
      return Object.prototype.toString.call(err);
    } catch {
      return 'a value that cannot be described'; // a revoked Proxy
    }
  }
}

/** A processor's `pri`, or NORMAL when it returned something that is not a priority. */
function clampPri(pri: unknown): number {
  return pri === 0 || pri === 1 || pri === 2 || pri === 3 ? pri : 1;
}
